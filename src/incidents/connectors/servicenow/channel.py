"""The ServiceNow channel: one ``incident`` record per incident, through the Table API.

The first event of an incident with no record (the declare, normally) POSTs
``/api/now/table/incident``; the record's ``sys_id`` and ``number`` are kept as the channel
state, and every later event PATCHes ``/api/now/table/incident/{sys_id}``. A record deleted
in ServiceNow (404 on PATCH) is created again. An event that is not a declare and finds no
record creates it and then applies its change, in the same attempt.

``priority`` is never sent: the instance derives it from impact and urgency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson

from incidents.connectors.channel_base import Message, Outcome, OutcomeKind, Request, Response
from incidents.connectors.connector_auth import (
    SECRET_POINTERS as AUTH_SECRETS,
)
from incidents.connectors.connector_auth import (
    Authorizer,
    Step,
)
from incidents.connectors.incident_facts import clip
from incidents.connectors.sync_settings import INBOUND_SECRET_POINTER
from incidents.connectors.ticket_changes import (
    RECORD,
    Change,
    Move,
    RecordFields,
    auth_step,
    check_table,
    read_change,
    record_fields,
    record_state,
    table,
    ticketing_problems,
    unusable,
)
from incidents.errors import FieldError, pointer
from incidents.model.severity import Severity

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

NAME = "servicenow"
TABLE = "/api/now/table/incident"
RETURNED = "sysparm_fields=sys_id,number,state&sysparm_exclude_reference_link=true"
# impact, urgency ("1" High, "2" Medium, "3" Low) per severity; the instance's default
# priority matrix makes these priority 1..4.
SEVERITY: Mapping[str, Mapping[str, str]] = {
    "SEV1": {"impact": "1", "urgency": "1"},
    "SEV2": {"impact": "1", "urgency": "2"},
    "SEV3": {"impact": "2", "urgency": "2"},
    "SEV4": {"impact": "3", "urgency": "3"},
}
# incident state codes: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled
STATUS: Mapping[str, str] = {"ack": "2", "resolve": "6", "close": "7", "reopen": "2"}
CLOSE_CODE = "Solved (Permanently)"
SHORT_DESCRIPTION = 160  # the incident table's short_description length
TEXT = 4000  # description, work_notes and close_notes (the table's default lengths)
# Fields the channel sets itself, and those ServiceNow computes or keeps read-only.
OWN_FIELDS = (
    "short_description",
    "description",
    "impact",
    "urgency",
    "correlation_id",
    "state",
    "work_notes",
    "close_code",
    "close_notes",
    "priority",
    "number",
)
SETTINGS = ("auth", "mapping", "fields", "owns", "inbound_secret")
HEADERS = {"content-type": "application/json", "accept": "application/json"}


def severity_fields(severity: Severity, settings: Mapping[str, object]) -> dict[str, str]:
    row = table(settings, "severity", SEVERITY).get(severity.value, SEVERITY[severity.value])
    return {k: str(v) for k, v in row.items()} if isinstance(row, Mapping) else {}


def create_body(found: RecordFields, settings: Mapping[str, object]) -> dict[str, object]:
    """The new record: the fixed fields, then what the incident says."""
    fixed = settings.get("fields")
    body: dict[str, object] = dict(fixed) if isinstance(fixed, Mapping) else {}
    lines = [found.description] if found.description else []
    lines.append(f"Incident {found.incident} ({found.severity.value})")
    if found.service:
        lines.append(f"Service: {found.service}")
    body.update(
        short_description=clip(found.title, SHORT_DESCRIPTION),
        description=clip("\n\n".join(lines), TEXT),
        correlation_id=found.incident,
        **severity_fields(found.severity, settings),
    )
    return body


def update_body(
    change: Change, found: RecordFields, settings: Mapping[str, object], created: bool = False
) -> dict[str, object]:
    """The PATCH for one event (``created``: the record was just made from the incident, so
    the title and severity are already there). Empty when there is nothing to change."""
    status = table(settings, "status", STATUS)
    body: dict[str, object] = {}
    if (change.declare or change.retitle) and not created:  # replayed declare, or a new title
        body.update(short_description=clip(found.title, SHORT_DESCRIPTION))
    if change.severity is not None and not created:
        body.update(severity_fields(change.severity, settings))
    text = clip(change.text, TEXT)
    if change.move == Move.RESOLVE:
        close_code = _mapping(settings).get("close_code")
        body.update(
            state=str(status["resolve"]),
            close_code=close_code if isinstance(close_code, str) else CLOSE_CODE,
            close_notes=text or "Resolved",
        )
    elif change.move == Move.MITIGATE:
        body["work_notes"] = text or "Mitigated"
    elif change.move is not None:
        body["state"] = str(status[change.move.value])
        if text:
            body["work_notes"] = text
    elif change.note:
        body["work_notes"] = text or "A note was added (its text is not shown to this system)"
    elif text and not change.declare:
        body["work_notes"] = text  # the reason given for a severity change
    return body


def _mapping(settings: Mapping[str, object]) -> Mapping[str, object]:
    found = settings.get("mapping")
    return found if isinstance(found, Mapping) else {}


def _sent(body: Mapping[str, object], change: Change) -> dict[str, str]:
    """What the record now says, as two-way sync compares echoes against."""
    sent = {"state": str(body["state"])} if "state" in body else {}
    if change.severity is not None:
        sent["severity"] = change.severity.value
    return sent


class ServiceNowChannel:
    name = NAME
    needs_incident = True  # a record made for a later event is made from the incident
    SECRET_POINTERS: tuple[str, ...] = (*AUTH_SECRETS, INBOUND_SECRET_POINTER)

    def __init__(self) -> None:
        self.auth = Authorizer()

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        settings = spec.formatsettings
        problems = ticketing_problems(spec, SETTINGS)
        mapping = settings.get("mapping")
        if mapping is not None:
            problems += _validate_mapping(mapping)
        fixed = settings.get("fields")
        if fixed is not None:
            problems += _validate_fields(fixed)
        return problems

    def render(self, message: Message) -> Request:
        state = message.state
        if state is None or state.external_id is None:
            return self._prepare(message, self._create(message, Step("create")))
        change = read_change(message.event)
        body = update_body(
            change, record_fields(message, change), message.subscription.spec.formatsettings
        )
        return self._prepare(message, self._patch(message, state.external_id, body, Step("update")))

    def classify(self, message: Message, request: Request, response: Response) -> Outcome | Request:
        settings = message.subscription.spec.formatsettings
        step, handled = auth_step(self.auth, message, request, response)
        if handled is not None:
            return handled
        status = response.status
        if step.name == "create" and 200 <= status < 300:
            return self._created(message, step, response)
        if step.name == "update" and 200 <= status < 300:
            body = orjson.loads(request.body)
            sent = _sent(body, read_change(message.event))
            state = record_state(message, step.carry, sent)
            text = response.body.decode("utf-8", "replace")
            return Outcome(
                OutcomeKind.DELIVERED, status, response.latency_ms, body=text, state=state
            )
        if step.name == "update" and status == 404:
            # the record was deleted in ServiceNow: make another, then apply the event to it
            again = self.auth.follow(
                settings, self._create(message, step.next("create")), message.now
            )
            if again is not None:
                return again
        return unusable(message, response, step.carry)

    def _created(self, message: Message, step: Step, response: Response) -> Outcome | Request:
        try:
            result = orjson.loads(response.body).get("result") or {}
            sys_id, number = str(result["sys_id"]), str(result.get("number") or "")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            return unusable(message, response, step.carry, "the response names no sys_id")
        change = read_change(message.event)
        found = record_fields(message, change)
        carry = {**step.carry, RECORD: sys_id, "number": number, "severity": found.severity.value}
        done = Step(step.name, step.made, step.refreshed, carry)
        settings = message.subscription.spec.formatsettings
        body = update_body(change, found, settings, created=True)
        text = response.body.decode("utf-8", "replace")
        if not body:
            state = record_state(message, carry, {"state": "1"})
            return Outcome(
                OutcomeKind.DELIVERED, response.status, response.latency_ms, body=text, state=state
            )
        patch = self._patch(message, sys_id, body, done.next("update"))
        follow = self.auth.follow(settings, patch, message.now)
        if follow is None:
            error = f"created {number or sys_id}; its update is made by the next attempt"
            return Outcome(
                OutcomeKind.FAILED,
                response.status,
                response.latency_ms,
                error,
                text,
                state=record_state(message, carry),
            )
        return follow

    def _create(self, message: Message, step: Step) -> Request:
        change = read_change(message.event)
        body = create_body(record_fields(message, change), message.subscription.spec.formatsettings)
        url = f"{_base(message)}{TABLE}?{RETURNED}"
        return Request("POST", url, dict(HEADERS), orjson.dumps(body), step.encode())

    def _patch(
        self, message: Message, sys_id: str, body: Mapping[str, object], step: Step
    ) -> Request:
        url = f"{_base(message)}{TABLE}/{quote(sys_id, safe='')}?{RETURNED}"
        return Request("PATCH", url, dict(HEADERS), orjson.dumps(body), step.encode())

    def _prepare(self, message: Message, request: Request) -> Request:
        return self.auth.prepare(message.subscription.spec.formatsettings, request, message.now)


def _base(message: Message) -> str:
    return message.subscription.spec.sink.rstrip("/")


def _validate_mapping(raw: object) -> list[FieldError]:
    at = "/formatsettings/mapping"
    if not isinstance(raw, Mapping):
        return [FieldError(at, "mapping is an object with severity, status or close_code")]
    problems: list[FieldError] = []
    for name, value in raw.items():
        where = at + pointer(name)
        if name == "severity":
            problems += check_table(value, where, tuple(SEVERITY), Mapping)
            if isinstance(value, Mapping):
                for sev, row in value.items():
                    if (
                        sev in SEVERITY
                        and isinstance(row, Mapping)
                        and (
                            set(row) != {"impact", "urgency"}
                            or not all(str(v) in ("1", "2", "3") for v in row.values())
                        )
                    ):
                        problems.append(
                            FieldError(where + pointer(sev), "impact and urgency, each 1, 2 or 3")
                        )
        elif name == "status":
            problems += check_table(value, where, tuple(STATUS), (str, int))
        elif name == "close_code":
            if not isinstance(value, str) or not value.strip() or len(value) > 40:
                problems.append(FieldError(where, "close_code is a choice value (a string)"))
        else:
            problems.append(FieldError(where, f"unknown mapping {name!r}"))
    return problems


def _validate_fields(raw: object) -> list[FieldError]:
    at = "/formatsettings/fields"
    if not isinstance(raw, Mapping):
        return [FieldError(at, "fields is an object of incident fields and their values")]
    problems = []
    for name, value in raw.items():
        where = at + pointer(name)
        if name in OWN_FIELDS or name.startswith("sys_"):
            problems.append(FieldError(where, f"{name!r} is set by the gateway or by ServiceNow"))
        elif not isinstance(value, str | int | float | bool) or len(str(value)) > TEXT:
            problems.append(FieldError(where, "a field value is a string, number or boolean"))
    return problems
