"""The planner that keeps incidents and alerts in step with accepted events.

One planner, walking a call's requests and their events in order, so that every write to one
document carries the version its predecessor left (incidents are written by incident events
and by alerts). A refused request leaves no trace: the requests after it are planned on the
documents as they were before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from incidents.alerts.correlation import Correlator
from incidents.errors import IncidentsError
from incidents.ingest.planning import Pending
from incidents.lifecycle.incident_writes import IncidentWrites, ParsedIncidents, canonical_severity
from incidents.lifecycle.versioned_documents import DocumentCache, Documents
from incidents.model.types import EventType
from incidents.policy.alert_rules import AlertRules
from incidents.store.events import Accepted, EventStore


class WritePlanner:
    def __init__(self, store: EventStore, rules: AlertRules) -> None:
        self.store = store
        self.correlator = Correlator(store, rules)
        self.cache = DocumentCache()
        self.parsed = ParsedIncidents()

    def forget(self) -> None:
        """Planning or storing failed: what this process believes may be stale."""
        self.cache.clear()

    def stored(self, pending: Sequence[Pending], results: Sequence[Accepted]) -> None:
        """The store took these writes (except for duplicates): remember what they wrote."""
        for p, result in zip(pending, results, strict=True):
            if result.duplicate:
                continue
            for write in p.writes:
                self.cache.put(write.key, write.expect + 1, write.encoded)

    async def plan(
        self, requests: Sequence[Sequence[Pending]], now: datetime
    ) -> list[IncidentsError | None]:
        docs = Documents(self.store.redis, self.cache)
        incidents = IncidentWrites(docs, self.parsed, self.store.layout)
        refusals: list[IncidentsError | None] = []
        for pending in requests:
            mark = incidents.docs.mark()
            try:
                for p in pending:
                    await self._apply(incidents, p, now)
            except IncidentsError as exc:
                incidents.docs.undo(mark)
                refusals.append(exc)
            else:
                refusals.append(None)
        return refusals

    async def _apply(self, incidents: IncidentWrites, p: Pending, now: datetime) -> None:
        if p.event.type.startswith(EventType.INCIDENT_PREFIX):
            p.event = canonical_severity(p.event)
            await incidents.apply(p, now)
        elif p.event.type.startswith(EventType.ALERT_PREFIX):
            await self.correlator.apply(p, incidents, now)
