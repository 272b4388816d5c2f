"""Submitting events: the CloudEvents a producer posts (``POST /v1/events``, the console's
incident commands), and the events a door made from a vendor's payload (the inbound
adapters, a connector's webhook back). Either way they are checked, admitted by policy,
planned and stored as one batch by the ingest pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from incidents.ingest.pipeline import Ingestor
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import PRODUCER, Principal
from incidents.store.events import Accepted

# What an adapter's answer says of each event's alert.
ALERT_SHOWN = ("key", "outcome", "number", "status", "count", "reason")


@dataclass(frozen=True)
class Submitted:
    """What became of the posted events: one ``Accepted`` each, in order, and how many of
    them were stored before."""

    accepted: list[Accepted]
    duplicates: int

    @classmethod
    def of(cls, accepted: list[Accepted]) -> Submitted:
        return cls(accepted, sum(1 for a in accepted if a.duplicate))

    @property
    def all_duplicates(self) -> bool:
        """Every event was stored before (none is new)."""
        return bool(self.accepted) and self.duplicates == len(self.accepted)


@dataclass(frozen=True)
class MadeEvent:
    """What became of one event a door made: accepted (or a duplicate), and what became of
    its alert (opened, deduplicated, ignored...) when it planned one."""

    accepted: Accepted
    alert: Mapping[str, object] | None

    def to_dict(self) -> dict[str, Any]:
        result = self.accepted.to_dict()
        if self.alert is not None:
            result["alert"] = dict(self.alert)
        return result


class EventSubmission:
    """The ingest pipeline, as the doors hand it events; built once with the app's."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.store = ingestor.store

    async def submit(self, principal: Principal, raws: Sequence[object], batch: bool) -> Submitted:
        """Events in their JSON form, posted by a producer: the envelope and the schema are
        checked (a batch is judged whole), then admitted, planned and stored."""
        principal.require(PRODUCER)
        events = await self.ingestor.check_off_loop(raws, batch=batch)
        return Submitted.of(await self.ingestor.accept(events, principal))

    async def submit_made(
        self, principal: Principal, events: Sequence[CloudEvent]
    ) -> list[MadeEvent]:
        """Events a door made from a vendor's payload, as ``principal`` (whom that door
        authenticated: a producer's token, or a connector's signature for its owner), as one
        batch; one result per event."""
        checked = await self.ingestor.check_off_loop([e.to_dict() for e in events], batch=True)
        accepted = await self.ingestor.accept(checked, principal)
        stored = {s.sequence: s for s in await self.store.get_many([a.sequence for a in accepted])}
        results = []
        for item in accepted:
            found = stored.get(item.sequence)
            planned = found.plan.alert if found is not None else None
            alert = None
            if planned is not None:
                shown = planned.to_dict()
                alert = {k: shown[k] for k in ALERT_SHOWN if k in shown}
            results.append(MadeEvent(item, alert))
        return results
