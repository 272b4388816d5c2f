"""What each inbound change becomes: an event applied to the incident, a note, or nothing.

In order, a change is dropped when
1. it repeats the previous record the system sent (``Inbound.snapshot`` systems send the whole
   record on every update);
2. it only echoes what the gateway last sent to this subscription (the channel state):
   its value is the one last sent, and the system has not said otherwise since;
3. a note's text is one the gateway itself sent (a comment it posted, coming back);
4. the incident already has that value (nothing to apply).

What is left becomes an event when ``formatsettings.owns`` lists its field, and otherwise a
note saying what the system changed (not applied); an owned title change becomes an
``im.incident.state_change`` with the new ``title``. A status or severity event carries the
note to store instead should the state machine refuse it (vendors retry any non-2xx answer,
so a refusal is never sent back to them).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from incidents.connectors.channel_base import ChannelState
from incidents.connectors.inbound_events import make_event, parse_time, rfc3339, stable_id
from incidents.connectors.sync_changes import Change, Inbound
from incidents.connectors.sync_settings import Field
from incidents.connectors.ticket_changes import Move
from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import Incident
from incidents.model.origin import ORIGIN, source_for
from incidents.model.status import IncidentStatus
from incidents.model.types import EventType, Extension

NAMES = {"servicenow": "ServiceNow", "jira": "Jira", "pagerduty": "PagerDuty"}
# What the ticketing channels write when an event's text is not theirs to show.
PLACEHOLDERS = frozenset(
    {"Mitigated", "Resolved", "A note was added (its text is not shown to this system)"}
)


@dataclass(frozen=True)
class Planned:
    event: CloudEvent
    fallback: CloudEvent | None = None  # stored instead if the state machine refuses


@dataclass
class Decision:
    planned: list[Planned] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # the system's values, as now known


def _applicable(move: Move, incident: Incident) -> bool:
    status = incident.status
    if move == Move.REOPEN:  # from closed too: the state machine refuses it, and a note says so
        return status is not IncidentStatus.OPEN
    if move == Move.ACK:
        return incident.acknowledged_at is None
    if move == Move.RESOLVE:
        return status is not IncidentStatus.RESOLVED
    if move == Move.CLOSE:
        return status is not IncidentStatus.CLOSED
    return status is not IncidentStatus.MITIGATED


def _noop(change: Change, incident: Incident) -> bool:
    if change.field == Field.STATUS:
        return bool(change.moves) and not any(_applicable(m, incident) for m in change.moves)
    if change.field == Field.SEVERITY:
        return change.value == incident.severity.value
    if change.field == Field.TITLE:
        return change.value == incident.title
    if change.field == Field.ROLES:
        return incident.roles.get(change.role) == change.value
    return False


class Rules:
    """Decides one inbound webhook for one subscription and incident."""

    def __init__(
        self,
        inbound: Inbound,
        sub_id: str,
        owns: Set[Field],
        incident: Incident,
        state: ChannelState | None,
        seen: Mapping[str, str],
        sent_texts: Set[str],
    ) -> None:
        self.inbound, self.sub_id, self.owns = inbound, sub_id, owns
        self.incident, self.state, self.seen = incident, state, seen
        self.sent_texts = sent_texts
        self.system = NAMES.get(inbound.system, inbound.system)

    def decide(self) -> Decision:
        decision = Decision(seen=dict(self.seen))
        for n, change in enumerate(self.inbound.changes):
            why = self._dropped(change)
            if change.field != Field.NOTES and change.sent_key:
                decision.seen[change.sent_key] = change.vendor_value
            if why:
                decision.dropped.append({"field": change.field.value, "change": change.said,
                                         "reason": why})  # fmt: skip
                continue
            decision.planned.append(self._planned(n, change))
        return decision

    def _dropped(self, change: Change) -> str:
        key, value = change.sent_key, change.vendor_value
        if change.field == Field.NOTES:
            text = change.value.strip()
            if text in self.sent_texts or text in PLACEHOLDERS:
                return "echo: the gateway sent this text"
            if self.inbound.snapshot and key and self.seen.get(key) == value:
                return "unchanged since the system's last record"
            return ""
        last_seen = self.seen.get(key) if key else None
        if self.inbound.snapshot and last_seen == value:
            return "unchanged since the system's last record"
        sent = self.state.data.get(key) if (self.state is not None and key) else None
        if sent is not None and sent.casefold() == value.casefold() and last_seen in (None, sent):
            return "echo: the gateway sent this value"
        if _noop(change, self.incident):
            return "the incident already says so"
        return ""

    def _planned(self, n: int, change: Change) -> Planned:
        what = f"{self.system} changed {change.said}"
        if change.field == Field.NOTES:
            return Planned(self._note(n, change, change.value, applied=True))
        if change.field not in self.owns:
            text = (
                f"{what}; not applied: this connector does not own {change.field.value}"
                " (formatsettings.owns)"
            )
            return Planned(self._note(n, change, text, applied=False))
        event = self._applied(n, change, what)
        if event is None:
            text = f"{what}; not applied: nothing in the mapping stands for it"
            return Planned(self._note(n, change, text, applied=False))
        return Planned(event, self._note(n, change, what, applied=False, refused=True))

    def _applied(self, n: int, change: Change, what: str) -> CloudEvent | None:
        if change.field == Field.TITLE:
            if not change.value.strip():
                return None
            data = {"title": change.value.strip()[:300], "reason": what}
            return self._event(n, EventType.INCIDENT_STATE_CHANGE, data, change)
        if change.field == Field.SEVERITY:
            if not change.value:
                return None
            data = {"severity": change.value, "reason": what}
            return self._event(n, EventType.INCIDENT_STATE_CHANGE, data, change)
        if change.field == Field.ROLES:
            data = {"role": change.role, "assignee": change.value, "reason": what}
            return self._event(n, EventType.INCIDENT_ROLE_ASSIGN, data, change)
        moves = [m for m in change.moves if _applicable(m, self.incident)] or list(change.moves)
        if not moves:
            return None
        move = moves[0]
        if move == Move.ACK:
            return self._event(n, EventType.INCIDENT_ACK, {"note": what}, change)
        if move == Move.REOPEN:
            data = {"status": IncidentStatus.OPEN.value, "reason": what}
            return self._event(n, EventType.INCIDENT_STATE_CHANGE, data, change)
        kind = {Move.RESOLVE: EventType.INCIDENT_RESOLVE, Move.CLOSE: EventType.INCIDENT_CLOSE,
                Move.MITIGATE: EventType.INCIDENT_MITIGATE}[move]  # fmt: skip
        return self._event(n, kind, {"summary": what}, change)

    def _note(
        self, n: int, change: Change, text: str, applied: bool, refused: bool = False
    ) -> CloudEvent:
        data = {"text": text}
        if refused:
            data["text"] = f"{text}; not applied: the incident's state does not allow it"
        return self._event(n, EventType.INCIDENT_NOTE, data, change, applied, "refused" * refused)

    def _event(
        self,
        n: int,
        kind: str,
        data: Mapping[str, object],
        change: Change,
        applied: bool = True,
        suffix: str = "",
    ) -> CloudEvent:
        external: dict[str, object] = {**self.inbound.external, "field": change.field.value,
                                       "applied": applied}  # fmt: skip
        if change.field != Field.NOTES:  # a note's text is in the event, under its data class
            external.update(change=change.said, value=change.vendor_value)
        when = parse_time(self.inbound.time)
        attributes = {
            "id": stable_id(self.sub_id, self.inbound.event_id, str(n), suffix),
            "source": source_for(self.sub_id),
            "type": kind,
            "time": rfc3339(when) if when is not None else None,
            Extension.INCIDENT_ID: self.incident.id,
            Extension.ACTOR: self.inbound.actor or self.system,
            ORIGIN: self.sub_id,
        }
        return make_event(attributes, {**data, "external": external})
