"""ServiceNow: an ``incident`` record as the Table API returns it (``{"result": {...}}`` or
the bare record), sent by a business rule after each update.

The record is a snapshot, not a change: each field is read as the value it asks for, and the
rules drop what only repeats the incident, the gateway's last PATCH, or the previous snapshot.
Field values may be plain or ``{"value", "display_value"}`` (``sysparm_display_value=all``).
"""

from __future__ import annotations

from collections.abc import Mapping

from incidents.connectors.servicenow import channel
from incidents.connectors.sync_changes import Change, Inbound
from incidents.connectors.sync_mapping import moves_for, severity_for
from incidents.connectors.sync_settings import Field
from incidents.connectors.ticket_changes import table

SYSTEM = "servicenow"
STATE_NAMES = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed",
               "8": "Canceled"}  # fmt: skip


def _value(raw: object) -> str:
    if isinstance(raw, Mapping):
        raw = raw.get("value", raw.get("display_value"))
    return "" if raw is None else str(raw).strip()


def _display(raw: object) -> str:
    if isinstance(raw, Mapping):
        return str(raw.get("display_value") or raw.get("value") or "").strip()
    return "" if raw is None else str(raw).strip()


def record_of(payload: object) -> Mapping[str, object] | None:
    if isinstance(payload, Mapping):
        inner = payload.get("result")
        found = inner if isinstance(inner, Mapping) else payload
        return found if found.get("sys_id") else None
    return None


def parse(payload: object, settings: Mapping[str, object]) -> Inbound | None:
    """The record's fields as changes; None when the payload is no incident record."""
    record = record_of(payload)
    if record is None:
        return None
    sys_id, number = _value(record.get("sys_id")), _value(record.get("number"))
    changes: list[Change] = []
    state = _value(record.get("state"))
    if state:
        name = STATE_NAMES.get(state, state)
        moves = moves_for(table(settings, "status", channel.STATUS), state)
        changes.append(
            Change(Field.STATUS, moves, said=f"state {name} ({state})", sent_key="state",
                   vendor_value=state)
        )  # fmt: skip
    impact, urgency = _value(record.get("impact")), _value(record.get("urgency"))
    if impact and urgency:
        pair = {"impact": impact, "urgency": urgency}
        sev = severity_for(table(settings, "severity", channel.SEVERITY), pair)
        changes.append(
            Change(Field.SEVERITY, value=sev or "",
                   said=f"impact {impact}, urgency {urgency}", sent_key="severity",
                   vendor_value=sev or f"{impact},{urgency}")
        )  # fmt: skip
    title = _value(record.get("short_description"))
    if title:
        changes.append(
            Change(Field.TITLE, value=title, said=f"short_description {title!r}",
                   sent_key="title", vendor_value=title)
        )  # fmt: skip
    assignee = _display(record.get("assigned_to"))
    if assignee:
        changes.append(
            Change(Field.ROLES, value=assignee, role="commander",
                   said=f"assigned_to {assignee}", sent_key="assigned_to", vendor_value=assignee)
        )  # fmt: skip
    for journal in ("work_notes", "comments"):
        text = _value(record.get(journal))
        if text:
            changes.append(
                Change(Field.NOTES, value=text, said=journal, sent_key=journal,
                       vendor_value=text)
            )  # fmt: skip
    version = _value(record.get("sys_mod_count")) or _value(record.get("sys_updated_on"))
    return Inbound(
        system=SYSTEM,
        event_id=f"{sys_id}:{version}",
        actor=_display(record.get("sys_updated_by")),
        record=sys_id,
        incident_hint=_value(record.get("correlation_id")),
        changes=tuple(changes),
        snapshot=True,
        external={"system": SYSTEM, "sys_id": sys_id, "number": number},
    )
