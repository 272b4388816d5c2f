"""The read APIs apply the delivery rule to the caller: the same visibility and clearance
check, and the same field redaction where data is returned.

- ``may_read(principal, stored)``: ``Services.may_read`` (visibility and clearance only).
- ``readable(principal, stored, registry)``: the stored event as the caller may see it
  (marked fields above its clearance removed, ``imredacted`` set), or None.
- ``incidents.policy.access.may_see(principal, tenant, visibility, data_class)`` is the
  rule for incidents, alerts and other documents that carry the labels of their events.
- ``visible_incident(principal, document, registry)``: an incident document without the
  fields its declare schema marks above the caller's clearance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from incidents.auth import Principal
from incidents.model.cloudevent import StoredEvent
from incidents.model.schemas import SchemaRegistry
from incidents.model.types import EventType
from incidents.policy.outbound import event_denial, judge
from incidents.policy.redaction import redact


def may_read(principal: Principal, stored: StoredEvent) -> bool:
    """``Services.may_read``: whether the caller may see a stored event at all."""
    return event_denial(stored.event, principal) is None


def readable(
    principal: Principal, stored: StoredEvent, registry: SchemaRegistry
) -> StoredEvent | None:
    """The stored event as the caller may see it, or None when it may not see it."""
    verdict = judge(stored.event, principal, registry)
    if verdict.event is None:
        return None
    if verdict.event is stored.event:
        return stored
    return dataclasses.replace(stored, event=verdict.event)


def visible_event(
    principal: Principal, stored: StoredEvent, registry: SchemaRegistry
) -> dict[str, Any] | None:
    """``readable`` in the JSON form the events API returns."""
    found = readable(principal, stored, registry)
    return None if found is None else found.to_dict()


def visible_data(
    principal: Principal, data: Any, event_type: str, registry: SchemaRegistry
) -> tuple[Any, list[str]]:
    """``data`` of an event type (or a document built from one) without the fields marked
    above the caller's clearance, and the JSON pointers of those removed."""
    return redact(data, registry.marked_fields(event_type), principal.clearance)


def visible_incident(
    principal: Principal, document: Mapping[str, Any], registry: SchemaRegistry
) -> dict[str, Any]:
    """An incident document (``Incident.to_dict()``) without the fields that the declare
    schema marks above the caller's clearance (e.g. ``summary``); when any is removed, the
    document lists them in ``redacted``."""
    data, removed = visible_data(principal, dict(document), EventType.INCIDENT_DECLARE, registry)
    out = dict(data)
    if removed:
        out["redacted"] = removed
    return out
