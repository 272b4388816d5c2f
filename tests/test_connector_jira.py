"""The Jira Cloud channel: every row of the mapping table rendered as the REST v3 requests it
becomes, each body validated against Atlassian's published OpenAPI document and the ADF
schema, and the channel driven by the real Dispatcher against a real HTTP server that plays a
Jira site (transitions looked up by name, 429 with Retry-After)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from jsonschema import Draft4Validator, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from incidents.connectors.channel_base import (
    ChannelState,
    Message,
    Outcome,
    OutcomeKind,
    Request,
)
from incidents.connectors.jira.channel import SEVERITY, STATUS, JiraChannel, adf
from incidents.delivery.channel_state import ChannelStateStore
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.redis import connect_async
from incidents.subscriptions.spec import Spec
from tests.connector_support import deliver_once, reply, ticket_message
from tests.delivery_support import publish
from tests.support import event, serve_in_thread

T0 = 1_800_000_000.0
CONTRACTS = Path(__file__).parent / "contracts"
BASIC = {"basic": {"username": "bot@acme.com", "password": "api-token"}}
FIELDS = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}}
SETTINGS: dict[str, object] = {"auth": BASIC, "fields": FIELDS}
KEY = "OPS-12"
KEPT = ChannelState(KEY, {"priority": "Highest"})
DECLARE = {
    "title": "Card payments failing",
    "severity": "SEV1",
    "service": "card payments",
    "summary": 'Acquirer says "timeout"\n\nsince 10:02',
}
# the operations of the OpenAPI document, by (method, path template)
OPERATIONS = {
    ("POST", "/rest/api/3/issue"): "/rest/api/3/issue",
    ("PUT", "/rest/api/3/issue/{key}"): "/rest/api/3/issue/{issueIdOrKey}",
    ("POST", "/rest/api/3/issue/{key}/comment"): "/rest/api/3/issue/{issueIdOrKey}/comment",
    ("POST", "/rest/api/3/issue/{key}/transitions"): "/rest/api/3/issue/{issueIdOrKey}/transitions",
}


_ISSUE_KEY = re.compile(r"/[A-Z][A-Z0-9]*-[0-9]+(?=/|$)")


@cache
def _openapi() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (CONTRACTS / "jira-cloud-v3-issues.openapi.json").read_text()
    )
    return found


@cache
def _adf() -> Draft4Validator:
    schema = json.loads((CONTRACTS / "atlassian-adf-v1-full.schema.json").read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def check_contract(method: str, path: str, body: Mapping[str, Any]) -> None:
    """A request body validates against its operation's request schema in Jira's OpenAPI
    document (refs resolved in the document), and every ADF document in it against ADF."""
    template = _ISSUE_KEY.sub("/{key}", path)
    document = _openapi()
    operation = document["paths"][OPERATIONS[method, template]][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    Draft4Validator({**schema, "components": document["components"]}).validate(body)
    for doc in (body.get("body"), body.get("fields", {}).get("description")):
        if doc is not None:
            _adf().validate(doc)


def test_the_contract_check_rejects_what_jira_would() -> None:
    """The checks have teeth: an empty ADF text node, an unknown ADF node and a field update
    that is not a list of operations are refused."""
    empty = {
        "body": {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}],
        }
    }
    odd = {"body": {"type": "doc", "version": 1, "content": [{"type": "script", "text": "x"}]}}
    for body in (empty, odd):
        with pytest.raises(ValidationError):
            check_contract("POST", f"/rest/api/3/issue/{KEY}/comment", body)
    with pytest.raises(ValidationError):
        check_contract("PUT", f"/rest/api/3/issue/{KEY}", {"update": {"summary": {"set": "x"}}})


def sent(request: Request) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(request.body)
    path = request.url.removeprefix("https://acme.atlassian.net")
    check_contract(request.method, path, found)
    return found


def message(
    type_: str,
    data: dict[str, Any],
    state: ChannelState | None = None,
    settings: Mapping[str, object] = SETTINGS,
    view: Mapping[str, object] | None = None,
) -> Message:
    return ticket_message(
        "jira", "https://acme.atlassian.net", type_, data, state, settings, view, T0
    )


OFFERED = {
    "transitions": [
        {"id": "11", "name": "To Do", "to": {"name": "To Do"}},
        {"id": "21", "name": "In Progress", "to": {"name": "In Progress"}},
        {"id": "31", "name": "Done", "to": {"name": "Done"}},
    ]
}


@pytest.mark.parametrize("severity", ["SEV1", "SEV2", "SEV3", "SEV4"])
def test_declare_creates_an_issue_with_adf_priority_and_labels(severity: str) -> None:
    """A declare POSTs an issue: summary, an ADF description, the priority named for the
    severity (Highest / High / Medium / Low), labels and the fixed fields; the body validates
    against Jira's published request schema and ADF."""
    want = {"SEV1": "Highest", "SEV2": "High", "SEV3": "Medium", "SEV4": "Low"}[severity]
    request = JiraChannel().render(
        message("im.incident.declare", {**DECLARE, "severity": severity})
    )
    assert (request.method, request.url) == ("POST", "https://acme.atlassian.net/rest/api/3/issue")
    auth = "Basic " + base64.b64encode(b"bot@acme.com:api-token").decode()
    assert request.headers["authorization"] == auth
    fields = sent(request)["fields"]
    assert SEVERITY[severity] == want and fields["priority"] == {"name": want}
    assert fields["summary"] == "Card payments failing"
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Incident"}
    assert fields["labels"] == ["incidents", "INC-7", severity, "service-card-payments"]
    first = fields["description"]["content"][0]["content"]
    assert first == [
        {"type": "text", "text": 'Acquirer says "timeout"'},
        {"type": "hardBreak"},
        {"type": "hardBreak"},
        {"type": "text", "text": "since 10:02"},
    ]


def test_user_text_becomes_adf_text_nodes_within_jira_limits() -> None:
    """Text that looks like JSON or ADF stays text in a text node; the summary is cut to 255
    characters and a long note to Jira's text limit; blank notes still make valid ADF."""
    title = '"}], "type": "doc", {"x": ' + "ä" * 400
    fields = sent(
        JiraChannel().render(message("im.incident.declare", {**DECLARE, "title": title}))
    )["fields"]
    assert len(fields["summary"]) == 255 and fields["summary"].startswith('"}], "type"')
    note = JiraChannel().render(message("im.incident.note", {"text": "x" * 40_000}, KEPT))
    text = sent(note)["body"]["content"][0]["content"][0]["text"]
    assert len(text) == 32_000
    assert adf("", "\n\n") == {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "-"}]}],
    }
    _adf().validate(adf("", "\n\n"))


COMMENTS = [
    ("mitigate", "im.incident.mitigate", {"summary": "rolled back"}, "rolled back"),
    ("note", "im.incident.note", {"text": "paged the DBA"}, "paged the DBA"),
    (
        "role",
        "im.incident.role_assign",
        {"role": "commander", "assignee": "alice"},
        "commander is now alice",
    ),
]


@pytest.mark.parametrize(("row", "type_", "data", "text"), COMMENTS, ids=[c[0] for c in COMMENTS])
def test_notes_and_mitigation_are_adf_comments(
    row: str, type_: str, data: dict[str, Any], text: str
) -> None:
    """Mitigate and note rows POST an ADF comment on the kept issue."""
    channel, sent_message = JiraChannel(), message(type_, data, KEPT)
    request = channel.render(sent_message)
    assert (request.method, request.url) == (
        "POST",
        f"https://acme.atlassian.net/rest/api/3/issue/{KEY}/comment",
    )
    assert sent(request)["body"]["content"][0]["content"] == [{"type": "text", "text": text}]
    done = channel.classify(sent_message, request, reply(201, {"id": "10000"}))
    assert isinstance(done, Outcome) and done.kind == OutcomeKind.DELIVERED


MOVES = [
    ("ack", "im.incident.ack", {}, "In Progress", "21"),
    ("resolve", "im.incident.resolve", {"summary": "fixed"}, "Done", "31"),
    ("close", "im.incident.close", {}, "Done", "31"),
    ("reopen", "im.incident.state_change", {"status": "open", "reason": "back"}, "To Do", "11"),
]


@pytest.mark.parametrize(("row", "type_", "data", "name", "tid"), MOVES, ids=[m[0] for m in MOVES])
def test_status_rows_look_up_the_transition_by_name(
    row: str, type_: str, data: dict[str, Any], name: str, tid: str
) -> None:
    """Ack, resolve, close and reopen GET the issue's transitions, then POST the id of the one
    named in the mapping; the status sent is kept for two-way sync."""
    channel, sent_message = JiraChannel(), message(type_, data, KEPT)
    lookup = channel.render(sent_message)
    assert (lookup.method, lookup.url) == (
        "GET",
        f"https://acme.atlassian.net/rest/api/3/issue/{KEY}/transitions",
    )
    assert STATUS[row] == name
    move = channel.classify(sent_message, lookup, reply(200, OFFERED))
    assert isinstance(move, Request) and move.method == "POST" and move.url == lookup.url
    assert sent(move) == {"transition": {"id": tid}}
    done = channel.classify(sent_message, move, reply(204))
    assert isinstance(done, Outcome) and done.kind == OutcomeKind.DELIVERED
    assert done.state == ChannelState(KEY, {"priority": "Highest", "status": name})


def test_close_after_done_changes_nothing_and_a_missing_transition_fails_naming_it() -> None:
    """Close when the issue was already moved to Done makes no transition; a transition name
    the issue does not offer fails the attempt, naming it and those offered; the mapping can
    name another."""
    channel = JiraChannel()
    done_state = ChannelState(KEY, {"status": "Done"})
    closing = message("im.incident.close", {}, done_state)
    quiet = channel.classify(closing, channel.render(closing), reply(200, OFFERED))
    assert (
        isinstance(quiet, Outcome) and quiet.kind == OutcomeKind.DELIVERED and quiet.state is None
    )
    ack = message("im.incident.ack", {}, KEPT)
    offered = {"transitions": [{"id": "5", "name": "Start work", "to": {"name": "Doing"}}]}
    missing = channel.classify(ack, channel.render(ack), reply(200, offered))
    assert isinstance(missing, Outcome) and missing.kind == OutcomeKind.FAILED
    assert "'In Progress'" in missing.error and "'Start work'" in missing.error
    renamed = message(
        "im.incident.ack", {}, KEPT, {**SETTINGS, "mapping": {"status": {"ack": "start WORK"}}}
    )
    move = channel.classify(renamed, channel.render(renamed), reply(200, offered))
    assert isinstance(move, Request) and sent(move) == {"transition": {"id": "5"}}


def test_severity_change_puts_the_priority_and_can_be_mapped() -> None:
    """A severity change PUTs the priority by name; formatsettings.mapping renames it."""
    change = {"severity": "P2", "reason": "spreading"}
    request = JiraChannel().render(message("im.incident.state_change", change, KEPT))
    assert (request.method, request.url) == (
        "PUT",
        f"https://acme.atlassian.net/rest/api/3/issue/{KEY}",
    )
    assert sent(request) == {"fields": {"priority": {"name": "High"}}}
    mapped = {**SETTINGS, "mapping": {"severity": {"SEV2": "P2 - Major"}}}
    sent_message = message("im.incident.state_change", change, KEPT, mapped)
    channel = JiraChannel()
    put = channel.render(sent_message)
    assert sent(put) == {"fields": {"priority": {"name": "P2 - Major"}}}
    done = channel.classify(sent_message, put, reply(204))
    assert isinstance(done, Outcome) and done.state == ChannelState(KEY, {"priority": "P2 - Major"})


def test_status_and_severity_together_and_a_replayed_declare() -> None:
    """A state change of status and severity PUTs the priority, then transitions; a declare
    replayed onto a kept issue edits its summary and priority instead of creating another."""
    channel = JiraChannel()
    both = message(
        "im.incident.state_change", {"status": "resolved", "severity": "SEV4", "reason": "ok"}, KEPT
    )
    put = channel.render(both)
    assert put.method == "PUT" and sent(put) == {"fields": {"priority": {"name": "Low"}}}
    lookup = channel.classify(both, put, reply(204))
    assert isinstance(lookup, Request) and lookup.method == "GET"
    move = channel.classify(both, lookup, reply(200, OFFERED))
    assert isinstance(move, Request) and sent(move) == {"transition": {"id": "31"}}
    done = channel.classify(both, move, reply(204))
    assert isinstance(done, Outcome) and done.state == ChannelState(
        KEY, {"priority": "Low", "status": "Done"}
    )
    replay = channel.render(message("im.incident.declare", DECLARE, KEPT))
    assert replay.method == "PUT"
    assert sent(replay) == {
        "fields": {"summary": "Card payments failing", "priority": {"name": "Highest"}}
    }


def test_responses_are_classified() -> None:
    """201 keeps the issue key; 429 and 503 fail with Jira's Retry-After; a 400 fails with
    Jira's error body kept for the delivery log."""
    channel, sent_message = JiraChannel(), message("im.incident.declare", DECLARE)
    create = channel.render(sent_message)
    made = channel.classify(
        sent_message, create, reply(201, {"id": "10002", "key": KEY, "self": "x"})
    )
    assert isinstance(made, Outcome) and made.kind == OutcomeKind.DELIVERED
    assert made.state == ChannelState(KEY, {"priority": "Highest"})
    for status in (429, 503):
        busy = channel.classify(sent_message, create, reply(status, **{"retry-after": "20"}))
        assert isinstance(busy, Outcome) and (busy.kind, busy.retry_after) == (
            OutcomeKind.FAILED,
            20.0,
        )
    bad = channel.classify(sent_message, create, reply(400, {"errors": {"priority": "not valid"}}))
    assert isinstance(bad, Outcome) and bad.kind == OutcomeKind.FAILED and "not valid" in bad.body


def test_settings_are_validated_naming_the_field() -> None:
    """Registration requires auth, project and issuetype, and names unknown settings, mapping
    rows and fields the gateway sets."""
    spec = Spec(
        sink="https://acme.atlassian.net",
        types=("im.incident.*",),
        format="jira",
        formatsettings={
            "fields": {"summary": "x", "project": {"key": "OPS"}},
            "mapping": {"severity": {"SEV5": "x"}, "status": {"ack": ""}},
        },
    )
    assert sorted(p.pointer for p in JiraChannel().validate(spec)) == [
        "/formatsettings/auth",
        "/formatsettings/fields/issuetype",
        "/formatsettings/fields/summary",
        "/formatsettings/mapping/severity/SEV5",
        "/formatsettings/mapping/status/ack",
    ]
    good = Spec(
        sink="https://acme.atlassian.net",
        types=("im.incident.*",),
        format="jira",
        formatsettings=SETTINGS,
    )
    assert JiraChannel().validate(good) == []
    assert "/auth/basic/password" in JiraChannel.SECRET_POINTERS


@dataclass
class Site:
    """A Jira Cloud site: issues with a workflow To Do -> In Progress -> Done, comments, and
    scripted failures; every request body is checked against the published contracts."""

    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[tuple[str, str, int]] = field(default_factory=list)  # (method, suffix, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        workflow = {"11": "To Do", "21": "In Progress", "31": "Done"}

        async def handle(request: HttpRequest) -> HttpResponse:
            raw = await request.body()
            body: dict[str, Any] = orjson.loads(raw) if raw else {}
            path, method = request.url.path, request.method
            if method != "GET":
                template = path
                if "key" in request.path_params:
                    template = path.replace(request.path_params["key"], KEY)
                check_contract(method, template, body)
            with self.lock:
                self.calls.append((method, path))
                expected = "Basic " + base64.b64encode(b"bot@acme.com:api-token").decode()
                if request.headers.get("authorization") != expected:
                    return JSONResponse({"errorMessages": ["unauthorized"]}, 401)
                for i, (m, suffix, status) in enumerate(self.fail_next):
                    if m == method and path.endswith(suffix):
                        del self.fail_next[i]
                        return JSONResponse(
                            {"errorMessages": ["rate limited"]},
                            status,
                            headers={"Retry-After": "1"},
                        )
                key = request.path_params.get("key")
                if key is None:
                    key = f"OPS-{len(self.issues) + 1}"
                    self.issues[key] = {**body["fields"], "status": "To Do", "comments": []}
                    return JSONResponse(
                        {
                            "id": str(10000 + len(self.issues)),
                            "key": key,
                            "self": f"{request.base_url}rest/api/3/issue/{key}",
                        },
                        201,
                    )
                issue = self.issues[key]
                if path.endswith("/transitions") and method == "GET":
                    offered = [
                        {"id": i, "name": n, "to": {"name": n}}
                        for i, n in workflow.items()
                        if n != issue["status"]
                    ]
                    return JSONResponse({"transitions": offered})
                if path.endswith("/transitions"):
                    issue["status"] = workflow[body["transition"]["id"]]
                    return HttpResponse(status_code=204)
                if path.endswith("/comment"):
                    issue["comments"].append(body["body"])
                    return JSONResponse({"id": str(len(issue["comments"]))}, 201)
                issue.update(body["fields"])
                return HttpResponse(status_code=204)

        issue, key = "/rest/api/3/issue", "/rest/api/3/issue/{key}"
        return Starlette(
            routes=[
                Route(issue, handle, methods=["POST"]),
                Route(key, handle, methods=["PUT"]),
                Route(key + "/comment", handle, methods=["POST"]),
                Route(key + "/transitions", handle, methods=["GET", "POST"]),
            ]
        )


def test_the_dispatcher_creates_one_issue_and_moves_it_through_a_429(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Through the real Dispatcher, an ack for an incident with no issue creates it and then
    looks up its transition; the lookup's 429 keeps the new key, so the retry after the
    Retry-After only transitions it; notes become comments on that same issue, and a severity
    change its priority."""
    site, now, channel = Site(), [T0], JiraChannel()
    with serve_in_thread(site.app()) as url:
        # not the declare: the first event this subscription gets is for an incident with no issue
        kinds = ["im.incident.ack", "im.incident.note", "im.incident.state_change"]
        created = client.post("/v1/subscriptions", json={"sink": url, "types": kinds})
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        stored = orjson.loads(redis_client.hget(keys.subscription(sub_id), "spec") or b"{}")
        stored.update(format="jira", formatsettings=SETTINGS)
        redis_client.hset(keys.subscription(sub_id), "spec", orjson.dumps(stored))

        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        site.fail_next.append(("GET", "/transitions", 429))
        publish(
            client,
            event("im.incident.ack", {}, imincidentid=incident),
            event("im.incident.note", {"text": 'said "hi"\nthen left'}, imincidentid=incident),
            event(
                "im.incident.state_change",
                {"severity": "SEV4", "reason": "contained"},
                imincidentid=incident,
            ),
        )
        assert (
            deliver_once(settings, channel, lambda: now[0]) == 1
        )  # created, then 429 on the lookup
        assert list(site.issues) == ["OPS-1"]
        now[0] += 5
        assert deliver_once(settings, channel, lambda: now[0]) == 3

    assert list(site.issues) == ["OPS-1"]
    issue = site.issues["OPS-1"]
    assert issue["status"] == "In Progress" and issue["priority"] == {"name": "Low"}
    assert issue["summary"] == "Card payments failing"  # from the incident, as the owner reads it
    assert issue["comments"][0]["content"][0]["content"] == [
        {"type": "text", "text": 'said "hi"'},
        {"type": "hardBreak"},
        {"type": "text", "text": "then left"},
    ]
    assert site.calls == [
        ("POST", "/rest/api/3/issue"),
        ("GET", "/rest/api/3/issue/OPS-1/transitions"),
        ("GET", "/rest/api/3/issue/OPS-1/transitions"),
        ("POST", "/rest/api/3/issue/OPS-1/transitions"),
        ("POST", "/rest/api/3/issue/OPS-1/comment"),
        ("PUT", "/rest/api/3/issue/OPS-1"),
    ]

    async def read() -> ChannelState | None:
        connection = connect_async(settings.redis_url or "")
        try:
            return await ChannelStateStore(connection).get(sub_id, incident)
        finally:
            await connection.aclose()

    assert asyncio.run(read()) == ChannelState(
        "OPS-1", {"priority": "Low", "status": "In Progress"}
    )
    log = client.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["attempts"]
    assert sorted(a["outcome"] for a in log) == ["delivered"] * 3 + ["failed"]
