"""What one caller may read: the delivery rule applied to the read APIs, in one place.

A ``Viewer`` is the caller (a principal) with the schema registry. Every query hands what it
read to the viewer before returning it:

- events: the same verdict as a delivery (``policy.outbound.judge``): withheld when the
  visibility or clearance rule hides it, else the event without the fields marked above the
  caller's clearance, with ``imredacted`` set;
- incidents and alerts carry the labels of their events (``policy.access.may_see``); an
  incident loses the fields its declare schema marks above the caller's clearance and lists
  them in ``redacted``;
- subscriptions and their delivery logs belong to their owner (admins see all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from incidents.model.alert import Alert
from incidents.model.cloudevent import StoredEvent
from incidents.model.incident import Incident
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.model.types import EventType
from incidents.policy.access import may_see
from incidents.policy.outbound import event_denial, judge
from incidents.policy.redaction import redact


class Viewer:
    """One caller's view of what the gateway keeps."""

    def __init__(self, principal: Principal, registry: SchemaRegistry) -> None:
        self.principal = principal
        self.registry = registry

    def may_read(self, stored: StoredEvent) -> bool:
        """Whether the caller may see a stored event at all (visibility and clearance)."""
        return event_denial(stored.event, self.principal) is None

    def event(self, stored: StoredEvent) -> StoredEvent | None:
        """The stored event as the caller may see it, or None when it may not see it."""
        verdict = judge(stored.event, self.principal, self.registry)
        if verdict.event is None:
            return None
        if verdict.event is stored.event:
            return stored
        return dataclasses.replace(stored, event=verdict.event)

    def data(self, data: object, event_type: str) -> tuple[object, list[str]]:
        """``data`` of an event type (or a document built from one) without the fields
        marked above the caller's clearance, and the JSON pointers of those removed."""
        return redact(data, self.registry.marked_fields(event_type), self.principal.clearance)

    def sees_incident(self, incident: Incident) -> bool:
        return may_see(self.principal, incident.tenant, incident.visibility, incident.data_class)

    def incident_document(self, document: Mapping[str, object]) -> dict[str, object]:
        """An incident document (``Incident.to_dict()``) without the fields its declare schema
        marks above the caller's clearance; when any is removed, ``redacted`` lists them."""
        data, removed = self.data(dict(document), EventType.INCIDENT_DECLARE)
        out = dict(data) if isinstance(data, Mapping) else {}
        if removed:
            out["redacted"] = removed
        return out

    def sees_alert(self, alert: Alert) -> bool:
        return may_see(self.principal, alert.tenant, alert.visibility, alert.data_class)

    def owns(self, owner: str) -> bool:
        """Whether the caller may read what ``owner`` (a principal id) owns."""
        return self.principal.is_admin or owner == self.principal.id
