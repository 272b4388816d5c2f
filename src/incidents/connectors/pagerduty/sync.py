"""PagerDuty v3 webhooks: ``incident.acknowledged``, ``incident.resolved``,
``incident.reopened``, ``incident.annotated`` and ``incident.priority_updated``.

The gateway's incident is the PagerDuty incident's ``incident_key`` (the ``dedup_key`` the
channel triggers with). A note (``incident.annotated``) names only the PagerDuty incident, so
the rules remember which PagerDuty incident each gateway incident is.
"""

from __future__ import annotations

from collections.abc import Mapping

from incidents.connectors.pagerduty.channel import ACKNOWLEDGE, RESOLVE, TRIGGER, severity_table
from incidents.connectors.sync_changes import Change, Inbound
from incidents.connectors.sync_settings import Field
from incidents.connectors.ticket_changes import Move
from incidents.model.severity import Severity

SYSTEM = "pagerduty"
# event type -> the move, and the Events v2 action the gateway would have sent for it
STATUS_EVENTS: Mapping[str, tuple[Move, str]] = {
    "incident.acknowledged": (Move.ACK, ACKNOWLEDGE),
    "incident.resolved": (Move.RESOLVE, RESOLVE),
    "incident.reopened": (Move.REOPEN, TRIGGER),
}
ANNOTATED = "incident.annotated"
PRIORITY_UPDATED = "incident.priority_updated"


def parse(payload: object, settings: Mapping[str, object]) -> Inbound | None:
    """The webhook's change; None for an event or payload this endpoint does not read."""
    event = payload.get("event") if isinstance(payload, Mapping) else None
    if not isinstance(event, Mapping):
        return None
    kind = str(event.get("event_type") or "")
    data = event.get("data")
    if not isinstance(data, Mapping):
        return None
    agent = event.get("agent")
    actor = str(agent.get("summary") or agent.get("id") or "") if isinstance(agent, Mapping) else ""
    changes: list[Change] = []
    if kind == ANNOTATED:
        ref = data.get("incident")
        record = str(ref.get("id") or "") if isinstance(ref, Mapping) else ""
        text = str(data.get("content") or "").strip()
        if text:
            changes.append(Change(Field.NOTES, value=text, said="note", vendor_value=text))
        hint = ""
    else:
        record, hint = str(data.get("id") or ""), str(data.get("incident_key") or "")
        if kind in STATUS_EVENTS:
            move, action = STATUS_EVENTS[kind]
            said = f"status {data.get('status') or kind.removeprefix('incident.')}"
            changes.append(Change(Field.STATUS, (move,), said=said, sent_key="action",
                                  vendor_value=action))  # fmt: skip
        elif kind == PRIORITY_UPDATED:
            priority = data.get("priority")
            name = str(priority.get("summary") or "") if isinstance(priority, Mapping) else ""
            try:
                sev = Severity.parse(name).value
            except ValueError:
                sev = ""
            # the channel state keeps the Events v2 severity the gateway last sent
            sent = severity_table(settings).get(sev, "") if sev else ""
            changes.append(Change(Field.SEVERITY, value=sev, said=f"priority {name or '(none)'}",
                                  sent_key="severity", vendor_value=sent))  # fmt: skip
    if not record:
        return None
    return Inbound(
        system=SYSTEM,
        event_id=str(event.get("id") or ""),
        actor=actor,
        record=record,
        incident_hint=hint,
        changes=tuple(changes),
        time=str(event["occurred_at"]) if isinstance(event.get("occurred_at"), str) else None,
        external={"system": SYSTEM, "incident": record, "event_type": kind},
    )
