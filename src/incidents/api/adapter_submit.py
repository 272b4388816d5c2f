"""What the adapters' and the sync's endpoints share: an adapter's input schema, and handing
the events they made to the ingest pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jsonschema.protocols import Validator

from incidents.auth import Principal
from incidents.ingest.pipeline import Ingestor
from incidents.model.cloudevent import CloudEvent
from incidents.services import Services


def adapter_schema(svc: Services, name: str) -> Validator:
    """The compiled input schema ``schemas/adapters/<name>.json`` (compiled once)."""
    return svc.adapter_schemas.get(name)


# What an adapter's answer says of each event's alert.
_ALERT_SHOWN = ("key", "outcome", "number", "status", "count", "reason")


async def submit(
    svc: Services, principal: Principal, events: Sequence[CloudEvent]
) -> list[dict[str, Any]]:
    """Check, admit, plan and store ``events`` as one batch; one result per event, saying
    what became of its alert (opened, deduplicated, ignored...)."""
    checked = await svc.get(Ingestor).check_off_loop([e.to_dict() for e in events], batch=True)
    accepted = await svc.get(Ingestor).accept(checked, principal)
    stored = {s.sequence: s for s in await svc.store.get_many([a.sequence for a in accepted])}
    results = []
    for item in accepted:
        result = item.to_dict()
        found = stored.get(item.sequence)
        planned = found.plan.alert if found is not None else None
        if planned is not None:
            shown = planned.to_dict()
            result["alert"] = {k: shown[k] for k in _ALERT_SHOWN if k in shown}
        results.append(result)
    return results
