"""The Jira Cloud channel (REST v3): one issue per incident.

The first event of an incident with no issue (the declare, normally) creates it (``POST
/rest/api/3/issue``: summary, an ADF description, priority by name, labels and the fixed
fields such as project and issuetype); its key is the channel state. Later events do what the
mapping table says, one action after another in the same attempt: the priority with ``PUT
.../issue/{key}``, the status with a transition looked up by name (``GET .../transitions``,
then ``POST .../transitions`` with its id), notes and mitigations as ADF comments.

Text from events is user input: it only ever becomes ADF text nodes, built as structures and
serialized once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson

from incidents.connectors.channel_base import Message, Outcome, OutcomeKind, Request, Response
from incidents.connectors.connector_auth import SECRET_POINTERS as AUTH_SECRETS
from incidents.connectors.connector_auth import Authorizer, Step
from incidents.connectors.incident_facts import clip
from incidents.connectors.sync_settings import INBOUND_SECRET_POINTER
from incidents.connectors.ticket_changes import (
    RECORD,
    TODO,
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

NAME = "jira"
API = "/rest/api/3/issue"
SEVERITY: Mapping[str, str] = {"SEV1": "Highest", "SEV2": "High", "SEV3": "Medium", "SEV4": "Low"}
# transition names per status row (mitigate and notes are comments)
STATUS: Mapping[str, str] = {
    "ack": "In Progress",
    "resolve": "Done",
    "close": "Done",
    "reopen": "To Do",
}
SUMMARY = 255  # Jira's summary length
TEXT = 32_000  # a little under Jira's 32,767 characters for a text field
LABEL = 255
OWN_FIELDS = ("summary", "description", "priority", "labels")
SETTINGS = ("auth", "mapping", "fields", "owns", "inbound_secret")
HEADERS = {"content-type": "application/json", "accept": "application/json"}
_SPACE = re.compile(r"\s+")


def adf(*paragraphs: str) -> dict[str, object]:
    """An ADF document: one paragraph per non-empty block of text, line breaks as hardBreak
    nodes (ADF text nodes may not be empty)."""
    content: list[object] = []
    for block in paragraphs:
        inline: list[object] = []
        for i, line in enumerate(block.split("\n")):
            if i:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        if any(node != {"type": "hardBreak"} for node in inline):
            content.append({"type": "paragraph", "content": inline})
    if not content:
        content.append({"type": "paragraph", "content": [{"type": "text", "text": "-"}]})
    return {"type": "doc", "version": 1, "content": content}


def labels(found: RecordFields) -> list[str]:
    """Jira labels hold no spaces."""
    raw = ["incidents", found.incident, found.severity.value]
    if found.service:
        raw.append("service-" + found.service)
    return [clip(_SPACE.sub("-", label), LABEL) for label in raw if label]


def priority(severity: Severity, settings: Mapping[str, object]) -> str:
    return str(table(settings, "severity", SEVERITY)[severity.value])


def transition_name(move: Move, settings: Mapping[str, object]) -> str:
    return str(table(settings, "status", STATUS)[move.value])


def create_body(found: RecordFields, settings: Mapping[str, object]) -> dict[str, object]:
    fixed = settings.get("fields")
    fields: dict[str, object] = dict(fixed) if isinstance(fixed, Mapping) else {}
    about = f"Incident {found.incident} ({found.severity.value})"
    if found.service:
        about += f", service {found.service}"
    fields.update(
        summary=clip(found.title, SUMMARY),
        description=adf(clip(found.description, TEXT), about),
        priority={"name": priority(found.severity, settings)},
        labels=labels(found),
    )
    return {"fields": fields}


def comment_body(text: str) -> dict[str, object]:
    return {"body": adf(clip(text, TEXT))}


def priority_body(severity: Severity, settings: Mapping[str, object]) -> dict[str, object]:
    return {"fields": {"priority": {"name": priority(severity, settings)}}}


def edit_body(found: RecordFields, settings: Mapping[str, object]) -> dict[str, object]:
    """A declare replayed onto an existing issue: its summary and priority again."""
    return {
        "fields": {
            "summary": clip(found.title, SUMMARY),
            "priority": {"name": priority(found.severity, settings)},
        }
    }


def transition_body(transition_id: str) -> dict[str, object]:
    return {"transition": {"id": transition_id}}


def actions(change: Change, created: bool = False) -> list[str]:
    """What one event does to an existing issue, in order (``created``: the issue was just
    made from the incident, so its summary and priority are already right)."""
    todo = []
    if (change.declare or change.retitle) and not created:
        todo.append("edit")
    elif change.severity is not None and not created and not change.declare:
        todo.append("priority")
    if change.move is not None and change.move != Move.MITIGATE:
        todo.append("transition")
    if change.note or change.move == Move.MITIGATE:
        todo.append("comment")
    return todo


class JiraChannel:
    name = NAME
    needs_incident = True  # an issue made for a later event is made from the incident
    SECRET_POINTERS: tuple[str, ...] = (*AUTH_SECRETS, INBOUND_SECRET_POINTER)

    def __init__(self) -> None:
        self.auth = Authorizer()

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        settings = spec.formatsettings
        problems = ticketing_problems(spec, SETTINGS)
        mapping = settings.get("mapping")
        if mapping is not None:
            problems += _validate_mapping(mapping)
        problems += _validate_fields(settings.get("fields"))
        return problems

    def render(self, message: Message) -> Request:
        state = message.state
        settings = message.subscription.spec.formatsettings
        if state is None or state.external_id is None:
            request = self._create(message, Step("create"))
        else:
            todo = actions(read_change(message.event)) or ["comment"]
            request = self._action(
                message, state.external_id, Step(todo[0], carry={TODO: ",".join(todo[1:])})
            )
        return self.auth.prepare(settings, request, message.now)

    def classify(self, message: Message, request: Request, response: Response) -> Outcome | Request:
        settings = message.subscription.spec.formatsettings
        step, handled = auth_step(self.auth, message, request, response)
        if handled is not None:
            return handled
        if not 200 <= response.status < 300:
            return unusable(message, response, step.carry)
        carry = dict(step.carry)
        if step.name == "create":
            try:
                key = orjson.loads(response.body)["key"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return unusable(message, response, carry, "the response names no issue key")
            change = read_change(message.event)
            found = record_fields(message, change)
            carry.update({RECORD: str(key), "priority": priority(found.severity, settings)})
            carry[TODO] = ",".join(actions(change, created=True))
        elif step.name == "lookup":
            return self._transition(message, request, response, step)
        elif step.name in ("priority", "edit"):
            carry["priority"] = str(orjson.loads(request.body)["fields"]["priority"]["name"])
        elif step.name == "transition":
            carry["status"] = carry.pop("_wanted", "")
        text = response.body.decode("utf-8", "replace")
        return self._next_or_done(
            message, response, Step(step.name, step.made, step.refreshed, carry), text
        )

    def _transition(
        self, message: Message, request: Request, response: Response, step: Step
    ) -> Outcome | Request:
        """Pick the transition named by the mapping from those the issue offers now."""
        settings = message.subscription.spec.formatsettings
        change = read_change(message.event)
        assert change.move is not None  # a lookup is only made for a status move
        wanted = transition_name(change.move, settings)
        carry = dict(step.carry)
        last = (message.state.data if message.state else {}).get("status")
        if change.move == Move.CLOSE and last is not None and last.casefold() == wanted.casefold():
            # already moved there when it was resolved: closing changes nothing in Jira
            return self._next_or_done(
                message, response, Step(step.name, step.made, step.refreshed, carry)
            )
        try:
            offered = orjson.loads(response.body).get("transitions") or []
            choices = [
                (str(t["id"]), str(t.get("name", "")), str((t.get("to") or {}).get("name", "")))
                for t in offered
            ]
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            return unusable(message, response, carry, "the transitions response is not readable")
        match = [c for c in choices if c[1].casefold() == wanted.casefold()] or [
            c for c in choices if c[2].casefold() == wanted.casefold()
        ]
        if not match:
            names = ", ".join(repr(c[1]) for c in choices) or "none"
            error = (
                f"no transition named {wanted!r} from the issue's status (offered: {names});"
                " set formatsettings.mapping.status"
            )
            return Outcome(
                OutcomeKind.FAILED,
                response.status,
                response.latency_ms,
                error,
                response.body.decode("utf-8", "replace"),
                state=record_state(message, carry),
            )
        carry["_wanted"] = wanted
        key = _key(message, carry)
        url = f"{_base(message)}{API}/{quote(key, safe='')}/transitions"
        body = orjson.dumps(transition_body(match[0][0]))
        nxt = Step("lookup", step.made, step.refreshed, carry).next("transition")
        follow = self.auth.follow(
            settings, Request("POST", url, dict(HEADERS), body, nxt.encode()), message.now
        )
        if follow is None:
            return Outcome(
                OutcomeKind.FAILED,
                response.status,
                response.latency_ms,
                f"the transition of {key} is made by the next attempt",
                state=record_state(message, carry),
            )
        return follow

    def _next_or_done(
        self, message: Message, response: Response, step: Step, body: str = ""
    ) -> Outcome | Request:
        """The next action still to do in this attempt, or the attempt delivered (``body``:
        the response text the delivery log keeps)."""
        carry = dict(step.carry)
        todo = [a for a in carry.get(TODO, "").split(",") if a]
        if not todo:
            state = record_state(message, carry)
            return Outcome(
                OutcomeKind.DELIVERED, response.status, response.latency_ms, body=body, state=state
            )
        carry[TODO] = ",".join(todo[1:])
        key = _key(message, carry)
        after = Step(step.name, step.made, step.refreshed, carry).next(todo[0])
        settings = message.subscription.spec.formatsettings
        follow = self.auth.follow(settings, self._action(message, key, after), message.now)
        if follow is None:
            return Outcome(
                OutcomeKind.FAILED,
                response.status,
                response.latency_ms,
                f"{todo[0]} on {key} is made by the next attempt",
                state=record_state(message, carry),
            )
        return follow

    def _create(self, message: Message, step: Step) -> Request:
        body = create_body(
            record_fields(message, read_change(message.event)),
            message.subscription.spec.formatsettings,
        )
        return Request(
            "POST", _base(message) + API, dict(HEADERS), orjson.dumps(body), step.encode()
        )

    def _action(self, message: Message, key: str, step: Step) -> Request:
        """The request of one action on the issue ``key``."""
        settings = message.subscription.spec.formatsettings
        change = read_change(message.event)
        issue = f"{_base(message)}{API}/{quote(key, safe='')}"
        if step.name == "transition":  # first look the transition up
            lookup = Step("lookup", step.made, step.refreshed, step.carry)
            return Request(
                "GET", issue + "/transitions", {"accept": "application/json"}, b"", lookup.encode()
            )
        if step.name == "edit":
            body = edit_body(record_fields(message, change), settings)
            return Request("PUT", issue, dict(HEADERS), orjson.dumps(body), step.encode())
        if step.name == "priority" and change.severity is not None:
            body = priority_body(change.severity, settings)
            return Request("PUT", issue, dict(HEADERS), orjson.dumps(body), step.encode())
        text = change.text
        if change.move == Move.MITIGATE:
            text = text or "Mitigated"
        elif not text:
            text = "A note was added (its text is not shown to this system)"
        body = comment_body(text)
        return Request("POST", issue + "/comment", dict(HEADERS), orjson.dumps(body), step.encode())


def _key(message: Message, carry: Mapping[str, str]) -> str:
    return carry.get(RECORD) or (message.state.external_id if message.state else None) or ""


def _base(message: Message) -> str:
    return message.subscription.spec.sink.rstrip("/")


def _validate_mapping(raw: object) -> list[FieldError]:
    at = "/formatsettings/mapping"
    if not isinstance(raw, Mapping):
        return [FieldError(at, "mapping is an object with severity or status")]
    problems: list[FieldError] = []
    for name, value in raw.items():
        where = at + pointer(name)
        if name == "severity":
            problems += check_table(value, where, tuple(SEVERITY), str)
        elif name == "status":
            problems += check_table(value, where, tuple(STATUS), str)
        else:
            problems.append(FieldError(where, f"unknown mapping {name!r}"))
    return problems


def _validate_fields(raw: object) -> list[FieldError]:
    at = "/formatsettings/fields"
    if not isinstance(raw, Mapping):
        return [FieldError(at, "fields is required: at least project and issuetype")]
    problems = [
        FieldError(at + pointer(name), f"{name!r} is required (e.g. {example})")
        for name, example in (("project", '{"key": "OPS"}'), ("issuetype", '{"name": "Incident"}'))
        if not isinstance(raw.get(name), Mapping) or not raw.get(name)
    ]
    problems += [
        FieldError(at + pointer(name), f"{name!r} is set by the gateway")
        for name in raw
        if name in OWN_FIELDS
    ]
    return problems
