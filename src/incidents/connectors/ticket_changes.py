"""What an incident event changes, as a ticketing connector (ServiceNow, Jira) reads it: the
rows of the mapping table in DESIGN.md ("Connectors"), and the facts a new record is made of.

The event and the incident are the ones the subscription's owner may see (redacted before
rendering), so nothing here reads past the owner's clearance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from incidents.connectors.channel_base import (
    ChannelState,
    Message,
    Outcome,
    OutcomeKind,
    Request,
    Response,
    retry_after,
)
from incidents.connectors.connector_auth import Authorizer, Step, validate_auth
from incidents.connectors.incident_facts import first_severity, unknown_settings
from incidents.connectors.sync_settings import validate_sync_settings
from incidents.errors import FieldError, pointer
from incidents.model.cloudevent import CloudEvent
from incidents.model.severity import Severity
from incidents.model.types import EventType

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

RECORD = "record"  # in a Step's carry: the record this attempt created
TODO = "todo"  # in a Step's carry: the actions still to do, comma-separated


class Move(StrEnum):
    """A status row of the mapping table."""

    ACK = "ack"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"


# The incident status a state_change names, as the row it is in the mapping table.
_STATUS_MOVES = {
    "open": Move.REOPEN,
    "mitigated": Move.MITIGATE,
    "resolved": Move.RESOLVE,
    "closed": Move.CLOSE,
}
_TYPE_MOVES = {
    EventType.INCIDENT_ACK: Move.ACK,
    EventType.INCIDENT_MITIGATE: Move.MITIGATE,
    EventType.INCIDENT_RESOLVE: Move.RESOLVE,
    EventType.INCIDENT_CLOSE: Move.CLOSE,
}
_TEXT_FIELDS = {
    EventType.INCIDENT_ACK: "note",
    EventType.INCIDENT_NOTE: "text",
    EventType.INCIDENT_STATE_CHANGE: "reason",
}


@dataclass(frozen=True)
class Change:
    """One event, as a connector applies it to the incident's record."""

    declare: bool = False
    move: Move | None = None
    severity: Severity | None = None  # a new severity (or the declared one)
    text: str = ""  # the note, summary or reason it carries ("" when none, or redacted)
    note: bool = False  # the text is a note of its own (note, role_assign), not a status'
    retitle: bool = False  # the incident has a new title (a state_change carrying ``title``)


def read_change(event: CloudEvent) -> Change:
    data = event.data if isinstance(event.data, Mapping) else {}
    kind = event.type
    text = data.get(_TEXT_FIELDS.get(kind, "summary"))
    said = text.strip() if isinstance(text, str) else ""
    severity = first_severity(data.get("severity"))
    if kind == EventType.INCIDENT_DECLARE:
        return Change(declare=True, severity=severity, text=said)
    if kind in _TYPE_MOVES:
        return Change(move=_TYPE_MOVES[kind], text=said)
    if kind == EventType.INCIDENT_STATE_CHANGE:
        status = data.get("status")
        move = _STATUS_MOVES.get(status) if isinstance(status, str) else None
        retitle = isinstance(data.get("title"), str)
        return Change(move=move, severity=severity, text=said, retitle=retitle)
    if kind == EventType.INCIDENT_ROLE_ASSIGN:
        role, who = data.get("role"), data.get("assignee")
        line = f"{role} is now {who}" if isinstance(role, str) and isinstance(who, str) else ""
        reason = data.get("reason")
        if isinstance(reason, str) and reason.strip():
            line += f": {reason.strip()}"
        return Change(text=line, note=True)
    return Change(text=said, note=True)


@dataclass(frozen=True)
class RecordFields:
    """What a new record is made of: the incident as the owner reads it, else the event."""

    incident: str
    title: str
    description: str
    severity: Severity
    service: str


def record_fields(message: Message, change: Change) -> RecordFields:
    view = message.incident_view or {}
    data = message.event.data if isinstance(message.event.data, Mapping) else {}
    declared = data if change.declare else {}

    def pick(name: str) -> str:
        for source in (declared, view):
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return ""

    incident = message.incident or str(view.get("id") or "")
    severity = change.severity or first_severity(view.get("severity")) or Severity.SEV3
    return RecordFields(
        incident=incident,
        title=pick("title") or f"Incident {incident}",
        description=pick("summary"),
        severity=severity,
        service=pick("service"),
    )


def check_types(types: Sequence[str]) -> list[FieldError]:
    """Ticketing connectors carry incident events: a subscription names only those."""
    if not types:
        return [FieldError("/types", "name the incident events to send, e.g. ['im.incident.*']")]
    return [
        FieldError(pointer("types", i), f"{t!r} is not an incident event type (im.incident.*)")
        for i, t in enumerate(types)
        if not t.startswith(EventType.INCIDENT_PREFIX)
    ]


def table(
    settings: Mapping[str, object], name: str, default: Mapping[str, object]
) -> dict[str, object]:
    """A default mapping table with the subscription's ``formatsettings.mapping`` overrides."""
    mapping = settings.get("mapping")
    override = mapping.get(name) if isinstance(mapping, Mapping) else None
    return {**default, **(override if isinstance(override, Mapping) else {})}


def check_table(
    raw: object, at: str, rows: Sequence[str], value_ok: type | tuple[type, ...]
) -> list[FieldError]:
    """A mapping override: an object whose keys are rows of the default table."""
    if not isinstance(raw, Mapping):
        return [FieldError(at, "an object keyed by " + ", ".join(rows))]
    problems = []
    for key, value in raw.items():
        where = at + pointer(key)
        if key not in rows:
            problems.append(FieldError(where, f"{key!r} is not one of {', '.join(rows)}"))
        elif not isinstance(value, value_ok) or (isinstance(value, str) and not value.strip()):
            problems.append(FieldError(where, "not a valid value for this row"))
    return problems


def record_state(
    message: Message, carry: Mapping[str, str], sent: Mapping[str, str] | None = None
) -> ChannelState | None:
    """The channel state after an attempt: the record it holds (created in this attempt or
    before) and what was last sent; None when nothing changed."""
    old = message.state or ChannelState()
    record = carry.get(RECORD) or old.external_id
    if record is None:
        return None
    learnt = {k: v for k, v in carry.items() if k not in (RECORD, TODO) and k[:1] != "_"}
    new = ChannelState(record, {**old.data, **learnt, **(sent or {})})
    return None if new == old else new


def unusable(
    message: Message, response: Response, carry: Mapping[str, str], what: str = ""
) -> Outcome:
    """A failed attempt: 429 and 503 with the system's Retry-After, a redirect said to be
    unfollowed, the body kept for the delivery log, and any record created kept."""
    status = response.status
    wait = None
    if status in (429, 503):
        wait = retry_after(response.headers.get("retry-after"), message.now)
    error = f"HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    elif status in (401, 403):
        error += " (the system refused the credentials in formatsettings.auth)"
    if what:
        error += f": {what}"
    text = response.body.decode("utf-8", "replace")
    state = record_state(message, carry)
    return Outcome(OutcomeKind.FAILED, status, response.latency_ms, error, text, wait, state)


def with_state(outcome: Outcome, message: Message, carry: Mapping[str, str]) -> Outcome:
    """An outcome the auth layer decided, keeping any record the attempt created."""
    return replace(outcome, state=record_state(message, carry))


def ticketing_problems(spec: Spec, known: Sequence[str]) -> list[FieldError]:
    """What every ticketing connector checks first: incident event types only, no unknown
    setting, the auth block, and the two-way sync settings (owns, inbound_secret)."""
    settings = spec.formatsettings
    problems = check_types(spec.types) + unknown_settings(settings, known)
    return problems + validate_auth(settings) + validate_sync_settings(settings)


def auth_step(
    auth: Authorizer, message: Message, request: Request, response: Response
) -> tuple[Step, Outcome | Request | None]:
    """The step a response answers, and what the auth layer makes of it: the next request (a
    token fetched, a retry after a 401), the attempt's outcome (its record kept), or None when
    the response is the channel's to read."""
    step = Step.decode(request.step)
    handled = auth.answer(message.subscription.spec.formatsettings, request, response, message.now)
    if isinstance(handled, Outcome):
        return step, with_state(handled, message, step.carry)
    return step, handled
