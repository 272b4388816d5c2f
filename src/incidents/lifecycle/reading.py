"""Reading materialized incidents and their timelines, filtered by who may see them."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from incidents.auth import Principal
from incidents.lifecycle.documents import read_many
from incidents.model.cloudevent import StoredEvent
from incidents.model.incident import Incident, TimelineEvent
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.model.timestamps import parse_time
from incidents.model.types import EventType, Extension
from incidents.policy.access import may_see
from incidents.store import keys
from incidents.store.redis import guarded

_SCAN = 500


def may_see_incident(principal: Principal, incident: Incident) -> bool:
    return may_see(principal, incident.tenant, incident.visibility, incident.data_class)


@dataclass(frozen=True)
class IncidentFilter:
    status: IncidentStatus | None = None
    severity: Severity | None = None
    service: str | None = None

    def matches(self, incident: Incident) -> bool:
        return (
            (self.status is None or incident.status is self.status)
            and (self.severity is None or incident.severity is self.severity)
            and (self.service is None or incident.service == self.service)
        )


async def get_incident(redis: aioredis.Redis, incident_id: str) -> Incident | None:
    async with guarded("reading an incident"):
        raw = await redis.hget(keys.incident(incident_id), "j")
    return Incident.from_dict(orjson.loads(raw)) if raw else None


async def list_incidents(
    redis: aioredis.Redis,
    principal: Principal,
    where: IncidentFilter,
    limit: int,
    offset: int = 0,
) -> list[Incident]:
    """Visible incidents matching ``where``, newest declared first."""
    found: list[Incident] = []
    skipped = 0
    start = 0
    while len(found) < limit:
        async with guarded("listing incidents"):
            ids = await redis.zrevrange(keys.INCIDENT_INDEX, start, start + _SCAN - 1)
        if not ids:
            break
        start += len(ids)
        docs = await read_many(redis, [keys.incident(_text_of(i)) for i in ids])
        for doc in docs:
            if doc is None:
                continue
            incident = Incident.from_dict(doc)
            if not where.matches(incident) or not may_see_incident(principal, incident):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(incident)
            if len(found) == limit:
                break
    return found


def _text_of(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _text(data: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


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


def timeline_entry(incident_id: str, stored: StoredEvent) -> TimelineEvent:
    """One stored event as a readable timeline entry (an alert's resolution reads as a note)."""
    event = stored.event
    data: Mapping[str, Any] = event.data if isinstance(event.data, Mapping) else {}
    title = _TITLES.get(event.type, event.type)
    if event.type == EventType.INCIDENT_NOTE and data.get("title"):
        title = str(data["title"])
    elif event.type == EventType.INCIDENT_ROLE_ASSIGN:
        title = f"{data.get('role')} assigned to {data.get('assignee')}"
    elif event.type == EventType.INCIDENT_STATE_CHANGE:
        parts = [f"{k} -> {data[k]}" for k in ("status", "severity") if k in data]
        title = "State changed: " + ", ".join(parts)
    elif event.type.startswith(EventType.ALERT_PREFIX):
        outcome = stored.plan.alert.outcome if stored.plan.alert is not None else None
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
