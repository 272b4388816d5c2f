"""Incidents read and written inside a planning pass, through the state machine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from incidents.errors import PolicyDenied
from incidents.ingest.planning import Pending
from incidents.lifecycle import machine
from incidents.lifecycle.incident_context import with_incident_context
from incidents.lifecycle.versioned_documents import Documents
from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import Incident
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.model.types import Extension
from incidents.store import keys
from incidents.store.events import IndexAdd


def canonical_severity(event: CloudEvent) -> CloudEvent:
    """The event with ``data.severity`` written as ``SEV1``..``SEV4`` (output is canonical)."""
    data = event.data
    if isinstance(data, Mapping) and isinstance(data.get("severity"), str):
        try:
            canonical = Severity.parse(data["severity"]).value
        except ValueError:
            return event
        if canonical != data["severity"]:
            return event.with_data({**data, "severity": canonical})
    return event


class ParsedIncidents:
    """Incidents already built from a stored document, keyed by that document's exact JSON.

    A busy incident is read, changed and written for every event; the next event then reads
    back the JSON just written. Keyed by content, an entry can never be stale: the same bytes
    always make the same (immutable) incident."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._entries: dict[str, tuple[bytes, Incident]] = {}

    def get(self, key: str, encoded: bytes) -> Incident | None:
        found = self._entries.get(key)
        return found[1] if found is not None and found[0] == encoded else None

    def put(self, key: str, encoded: bytes, incident: Incident) -> None:
        if key not in self._entries and len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # oldest first
        self._entries[key] = (encoded, incident)


class IncidentWrites:
    """The incidents of one planning pass: each read once (through ``ParsedIncidents``), an
    event applied to its incident through the state machine, and the new version planned as
    a write of the event."""

    def __init__(
        self, docs: Documents, parsed: ParsedIncidents, layout: keys.Partitions = keys.ONE
    ) -> None:
        self.docs = docs
        self.parsed = parsed
        self.layout = layout

    async def get(self, incident_id: str) -> Incident | None:
        key = self.layout.of_incident(incident_id).incident(incident_id)
        encoded = await self.docs.encoded(key)
        if encoded is not None:
            known = self.parsed.get(key, encoded)
            if known is not None:
                return known  # the JSON is not even decoded
        raw = await self.docs.read(key)
        if raw is None:
            return None
        incident = Incident.from_dict(raw)
        if encoded is not None:
            self.parsed.put(key, encoded, incident)
        return incident

    def put(self, pending: Pending, incident: Incident) -> None:
        space = self.layout.of_incident(incident.id)
        key = space.incident(incident.id)
        write = self.docs.write(pending, key, incident.to_dict())
        self.parsed.put(key, write.encoded, incident)
        if incident.version == 1 and incident.declared_at is not None:
            score = incident.declared_at.timestamp()
            pending.index.append(IndexAdd(space.INCIDENT_INDEX, score, incident.id))
        if incident.status is IncidentStatus.CLOSED and incident.updated_at is not None:
            # Retention counts from the close (or from a later event on the closed incident).
            closed = incident.updated_at.timestamp()
            pending.index.append(IndexAdd(space.CLOSED_INCIDENTS, closed, incident.id))

    async def apply(self, pending: Pending, now: datetime) -> Incident:
        """Apply ``pending.event`` to its incident and plan the write; raises when illegal."""
        event = pending.event
        incident_id = str(event.get(Extension.INCIDENT_ID))
        current = await self.get(incident_id)
        if current is not None:
            same_tenant(current, event)
        updated = machine.apply(current, event, now)
        self.put(pending, updated)
        # Stamped here, per event: in a group of events for one incident, each carries the
        # state after itself, not after the group.
        pending.event = with_incident_context(event, updated)
        return updated


def same_tenant(incident: Incident, event: CloudEvent) -> None:
    """Producers change only their own tenant's incidents."""
    tenant = event.get(Extension.TENANT)
    if incident.tenant and tenant is not None and tenant != incident.tenant:
        raise PolicyDenied(
            f"incident {incident.id!r} belongs to another tenant; {event.type} from tenant "
            f"{tenant!r} cannot change it",
            extra={"rule": "incident-tenant"},
        )
