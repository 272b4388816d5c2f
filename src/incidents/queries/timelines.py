"""An incident's timeline: its stored events, as the caller may see them, as readable entries."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress

from incidents.model.cloudevent import StoredEvent
from incidents.model.incident import TimelineEvent
from incidents.model.timestamps import parse_time
from incidents.model.types import EventType, Extension
from incidents.queries.incidents import IncidentQueries
from incidents.queries.visibility import Viewer
from incidents.store.events import EventStore

_TITLES = {
    EventType.INCIDENT_DECLARE: "Declared",
    EventType.INCIDENT_ACK: "Acknowledged",
    EventType.INCIDENT_MITIGATE: "Mitigated",
    EventType.INCIDENT_RESOLVE: "Resolved",
    EventType.INCIDENT_CLOSE: "Closed",
    EventType.INCIDENT_NOTE: "Note",
    EventType.INCIDENT_STATE_CHANGE: "State changed",
    EventType.INCIDENT_ROLE_ASSIGN: "Role assigned",
    EventType.ALERT_TRIGGER: "Alert triggered",
    EventType.ALERT_ACK: "Alert acknowledged",
    EventType.ALERT_RESOLVE: "Alert resolved",
}


class TimelineQueries:
    def __init__(self, incidents: IncidentQueries, store: EventStore) -> None:
        self.incidents = incidents
        self.store = store

    async def entries(
        self, viewer: Viewer, incident_id: str, after: int, limit: int
    ) -> list[TimelineEvent]:
        """Up to ``limit`` entries after sequence ``after``, in the order the gateway accepted
        them; events the caller may not see are left out, the others redacted for it."""
        incident = await self.incidents.find(viewer, incident_id)
        stored = await self.store.timeline(incident.id, after=after, limit=limit)
        return [
            timeline_entry(incident.id, shown)
            for s in stored
            if (shown := viewer.event(s)) is not None
        ]


def _text(data: Mapping[str, object], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _alert_outcome(stored: StoredEvent) -> object:
    return stored.plan.alert.outcome if stored.plan.alert is not None else None


def timeline_entry(incident_id: str, stored: StoredEvent) -> TimelineEvent:
    """One stored event as a readable timeline entry (an alert's resolution reads as a note)."""
    event = stored.event
    data: Mapping[str, object] = event.data if isinstance(event.data, Mapping) else {}
    title = _TITLES.get(event.type, event.type)
    if event.type == EventType.INCIDENT_NOTE and data.get("title"):
        title = str(data["title"])
    elif event.type == EventType.INCIDENT_ROLE_ASSIGN:
        title = f"{data.get('role')} assigned to {data.get('assignee')}"
    elif event.type == EventType.INCIDENT_STATE_CHANGE:
        parts = [f"{k} -> {data[k]}" for k in ("status", "severity") if k in data]
        title = "State changed: " + ", ".join(parts)
    elif event.type.startswith(EventType.ALERT_PREFIX):
        outcome = _alert_outcome(stored)
        title = f"{title}: {data.get('summary') or event.get(Extension.CORRELATION_KEY)}"
        if outcome in ("deduplicated", "ignored"):
            title += f" ({outcome})"
    raw_time = event.get("time")
    when = stored.ingested_at
    if isinstance(raw_time, str):
        with suppress(ValueError):
            when = parse_time(raw_time)
    return TimelineEvent(
        id=event.id,
        incident_id=incident_id,
        type=event.type,
        source=event.source,
        time=when,
        sequence=stored.sequence,
        actor=str(event.get(Extension.ACTOR) or ""),
        title=title,
        body=_text(data, "text", "summary", "reason", "note", "title"),
        data=event.data,
    )
