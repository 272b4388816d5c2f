"""The read APIs apply the delivery rule to the caller: the same visibility and clearance
check, and the same field redaction where data is returned."""

from __future__ import annotations

from typing import Any

from incidents.auth import Principal
from incidents.ingest.schemas import SchemaRegistry
from incidents.model.cloudevent import StoredEvent
from incidents.policy.access import may_see
from incidents.policy.outbound import event_denial, judge
from incidents.policy.redaction import redact


def may_see_incident(principal: Principal, tenant: str, visibility: str, data_class: str) -> bool:
    """Whether ``principal`` may see an incident (or any document) with these labels."""
    return may_see(principal, tenant, visibility, data_class)


def may_read(principal: Principal, stored: StoredEvent) -> bool:
    """``Services.may_read``: whether the caller may see a stored event at all."""
    return event_denial(stored.event, principal) is None


def visible_event(
    principal: Principal, stored: StoredEvent, registry: SchemaRegistry
) -> dict[str, Any] | None:
    """The stored event as the caller may see it (marked fields above its clearance removed,
    ``imredacted`` set), or None when it may not see it."""
    verdict = judge(stored.event, principal, registry)
    if verdict.event is None:
        return None
    out = stored.to_dict()
    out["event"] = verdict.event.to_dict()
    return out


def visible_data(
    principal: Principal, data: Any, event_type: str, registry: SchemaRegistry
) -> tuple[Any, list[str]]:
    """``data`` of an event type (or a document built from one, e.g. an incident from its
    declare) without the fields marked above the caller's clearance, and their pointers."""
    return redact(data, registry.marked_fields(event_type), principal.clearance)
