"""The incident state machine: one accepted event applied to one incident, as a pure function.

``declare`` creates; ``ack`` sets acknowledged; ``mitigate``, ``resolve``, ``close`` and
``state_change`` move the status along ``TRANSITIONS``; ``role_assign`` sets a role; ``note``
only appends to the timeline. Every applied event yields a new value one version higher;
a move the table does not allow raises ``IllegalTransition`` naming the allowed moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from incidents.errors import IllegalTransition
from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import DEFAULT_ROLES, Incident
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.model.timestamps import parse_time
from incidents.model.types import EventType, Extension

_MOVES: Mapping[str, IncidentStatus] = {
    EventType.INCIDENT_MITIGATE: IncidentStatus.MITIGATED,
    EventType.INCIDENT_RESOLVE: IncidentStatus.RESOLVED,
    EventType.INCIDENT_CLOSE: IncidentStatus.CLOSED,
}
# Events that change nothing but the timeline, so they are allowed on a closed incident too.
_APPEND_ONLY = frozenset({EventType.INCIDENT_NOTE})


def event_time(event: CloudEvent, now: datetime) -> datetime:
    """When the event says it happened, else when the gateway accepted it."""
    raw = event.get("time")
    if isinstance(raw, str):
        try:
            parsed = parse_time(raw)
        except ValueError:
            return now
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=now.tzinfo)
    return now


def _refuse(incident: Incident, event: CloudEvent, why: str) -> IllegalTransition:
    allowed = sorted(s.value for s in incident.status.allowed_moves())
    return IllegalTransition(
        f"{event.type} cannot apply to incident {incident.id!r}: {why}",
        extra={
            "incident": incident.id,
            "incident_status": incident.status.value,
            "allowed": allowed,
        },
    )


def declare(event: CloudEvent, now: datetime) -> Incident:
    data: Mapping[str, Any] = event.data if isinstance(event.data, Mapping) else {}
    roles: dict[str, str | None] = dict.fromkeys(DEFAULT_ROLES)
    roles.update(data.get("roles") or {})
    return Incident(
        id=str(event.get(Extension.INCIDENT_ID)),
        title=str(data["title"]),
        severity=Severity.parse(data["severity"]),
        summary=str(data.get("summary", "")),
        service=str(data.get("service", "")),
        roles=roles,
        labels=dict(data.get("labels") or {}),
        external_refs=dict(data.get("external_refs") or {}),
        declared_at=event_time(event, now),
        updated_at=now,
        version=1,
        tenant=str(event.get(Extension.TENANT) or ""),
        data_class=str(event.get(Extension.DATA_CLASS) or "internal"),
        visibility=str(event.get(Extension.VISIBILITY) or "internal"),
    )


def _move(incident: Incident, target: IncidentStatus, at: datetime) -> dict[str, Any]:
    """The field changes of a status move (already known to be allowed)."""
    changes: dict[str, Any] = {"status": target}
    if target is IncidentStatus.MITIGATED:
        changes["mitigated_at"] = at
    elif target is IncidentStatus.RESOLVED:
        changes["resolved_at"] = at
        # A resolved incident is also mitigated, even when nobody said so first.
        if incident.mitigated_at is None:
            changes["mitigated_at"] = at
    elif target is IncidentStatus.CLOSED:
        changes["closed_at"] = at
    elif target is IncidentStatus.OPEN:
        # A regression or recurrence: the clocks that measure recovery run again.
        changes["mitigated_at"] = None
        changes["resolved_at"] = None
    return changes


def apply(incident: Incident | None, event: CloudEvent, now: datetime) -> Incident:
    """The incident after ``event``; raises ``IllegalTransition`` (and changes nothing)
    when the event does not fit the incident's state."""
    incident_id = str(event.get(Extension.INCIDENT_ID) or "")
    if event.type == EventType.INCIDENT_DECLARE:
        if incident is not None:
            raise _refuse(incident, event, f"it is already declared ({incident.status.value})")
        return declare(event, now)
    if incident is None:
        raise IllegalTransition(
            f"incident {incident_id!r} has not been declared; send {EventType.INCIDENT_DECLARE} "
            "first",
            extra={"incident": incident_id, "incident_status": None, "allowed": []},
        )
    data: Mapping[str, Any] = event.data if isinstance(event.data, Mapping) else {}
    at = max(event_time(event, now), incident.declared_at or now)
    changes: dict[str, Any] = {}
    if incident.status is IncidentStatus.CLOSED and event.type not in _APPEND_ONLY:
        raise _refuse(incident, event, "it is closed, and closed is final")
    if event.type in _MOVES:
        target = _MOVES[event.type]
        if not incident.status.can_move_to(target):
            raise _refuse(incident, event, f"{incident.status.value} -> {target.value}")
        changes.update(_move(incident, target, at))
    elif event.type == EventType.INCIDENT_STATE_CHANGE:
        if "status" in data:
            target = IncidentStatus.parse(data["status"])
            if target is not incident.status or "severity" not in data:
                if not incident.status.can_move_to(target):
                    raise _refuse(incident, event, f"{incident.status.value} -> {target.value}")
                changes.update(_move(incident, target, at))
        if "severity" in data:
            changes["severity"] = Severity.parse(data["severity"])
        if "title" in data:
            changes["title"] = str(data["title"])
    elif event.type == EventType.INCIDENT_ACK:
        if incident.acknowledged_at is None:
            changes["acknowledged_at"] = at
    elif event.type == EventType.INCIDENT_ROLE_ASSIGN:
        roles = dict(incident.roles)
        roles[str(data["role"])] = str(data["assignee"])
        changes["roles"] = roles
    # Notes and attached alerts change nothing but the version: they are on the timeline.
    return incident.evolve(version=incident.version + 1, updated_at=now, **changes)
