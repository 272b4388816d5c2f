"""The contract between the ingest pipeline and the planners: ``Pending``, an event on its
way into the store with the writes planned to go with it, and ``Planner``, what plans them.

The pipeline (``ingest/pipeline.py``) hands each request's events to a ``Planner`` and stores
what it planned; the planners (``write_planner.py`` over ``lifecycle/`` and ``alerts/``) add
the writes. Both import this module, not each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from incidents.errors import IncidentsError
from incidents.model.cloudevent import CloudEvent
from incidents.model.plan import NO_PLAN, Plan
from incidents.store.events import Accepted, IndexAdd, VersionedWrite


@dataclass
class Pending:
    """An event on its way into the store, and the writes planned to go with it."""

    position: int
    event: CloudEvent
    writes: list[VersionedWrite] = field(default_factory=list)
    index: list[IndexAdd] = field(default_factory=list)
    plan: Plan = NO_PLAN


class Planner(Protocol):
    """Plans the state changes an accepted event causes (incidents, alerts), read-then-write:
    each write carries the version it read, and the store refuses it if that moved on.

    ``plan`` takes several requests' events and plans them in order, each request on top of
    the ones before it; a request it refuses (its error in the answer, None for the others)
    leaves nothing the requests after it see. ``stored`` is told which writes the store took;
    ``forget`` that planning or storing failed, so anything remembered may be stale."""

    async def plan(
        self, requests: Sequence[Sequence[Pending]], now: datetime
    ) -> list[IncidentsError | None]: ...

    def stored(self, pending: Sequence[Pending], results: Sequence[Accepted]) -> None: ...

    def forget(self) -> None: ...
