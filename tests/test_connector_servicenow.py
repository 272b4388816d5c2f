"""The ServiceNow channel: every row of the mapping table rendered as the Table API request it
becomes, responses classified, and the channel driven by the real Dispatcher against a real
HTTP server that plays a ServiceNow instance (OAuth, 429 with Retry-After, a deleted record)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import redis
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
from incidents.connectors.servicenow.channel import SEVERITY, ServiceNowChannel
from incidents.settings import Settings
from incidents.store import keys
from incidents.subscriptions.spec import Spec
from tests.connector_support import deliver_once, kept_state, reply, ticket_message
from tests.delivery_support import publish
from tests.support import event, serve_in_thread

T0 = 1_800_000_000.0
BASIC = {"basic": {"username": "svc-incidents", "password": "pw"}}
SETTINGS: dict[str, object] = {"auth": BASIC, "fields": {"assignment_group": "Operations"}}
SYS_ID = "9d385017c611228701d22104cc95c371"


def check_table_api(method: str, body: Mapping[str, Any]) -> None:
    """What ServiceNow's Table API documentation says a request may hold."""
    assert "priority" not in body  # derived by the instance from impact and urgency
    assert not [name for name in body if name.startswith("sys_")]  # read-only
    for name in ("impact", "urgency"):
        if name in body:
            assert body[name] in ("1", "2", "3")
    if "state" in body:
        assert body["state"] in ("1", "2", "3", "6", "7", "8")
    if body.get("state") == "6":
        assert body["close_code"] and body["close_notes"]
    if method == "POST":
        assert body["short_description"] and body["correlation_id"]
    if "short_description" in body:
        assert len(body["short_description"]) <= 160
    assert all(isinstance(v, str) for v in body.values())


def message(
    type_: str,
    data: dict[str, Any],
    state: ChannelState | None = None,
    settings: Mapping[str, object] = SETTINGS,
    view: Mapping[str, object] | None = None,
) -> Message:
    return ticket_message(
        "servicenow", "https://acme.service-now.com/", type_, data, state, settings, view, T0
    )


def body(request: Request) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(request.body)
    check_table_api(request.method, found)
    return found


DECLARE = {
    "title": "Card payments failing",
    "severity": "SEV1",
    "service": "payments",
    "summary": 'Acquirer says "timeout"\nsince 10:02',
}
KEPT = ChannelState(SYS_ID, {"number": "INC0010001", "severity": "SEV1"})


@pytest.mark.parametrize("severity", ["SEV1", "SEV2", "SEV3", "SEV4"])
def test_declare_creates_the_incident_record_with_impact_and_urgency(severity: str) -> None:
    """A declare POSTs the incident table: title, description, correlation_id, the fixed
    fields, impact/urgency from the severity row (1,1 / 1,2 / 2,2 / 3,3) and never priority."""
    want = {"SEV1": ("1", "1"), "SEV2": ("1", "2"), "SEV3": ("2", "2"), "SEV4": ("3", "3")}
    request = ServiceNowChannel().render(
        message("im.incident.declare", {**DECLARE, "severity": severity})
    )
    assert request.method == "POST"
    assert request.url.startswith("https://acme.service-now.com/api/now/table/incident?")
    assert request.headers["authorization"].startswith("Basic ")
    sent = body(request)
    assert (sent["impact"], sent["urgency"]) == want[severity]
    assert dict(SEVERITY[severity]) == {"impact": want[severity][0], "urgency": want[severity][1]}
    assert sent["short_description"] == "Card payments failing"
    assert sent["correlation_id"] == "INC-7" and sent["assignment_group"] == "Operations"
    assert sent["description"].startswith('Acquirer says "timeout"\nsince 10:02')


def test_user_text_stays_text_and_within_servicenow_lengths() -> None:
    """Quotes, braces and newlines in a title arrive as the same text (JSON built from
    structures), and short_description is cut to 160 characters."""
    title = '"}, "priority": "1", "x": {"' + "é" * 300
    sent = body(
        ServiceNowChannel().render(message("im.incident.declare", {**DECLARE, "title": title}))
    )
    assert len(sent["short_description"]) == 160 and sent["short_description"].endswith("\u2026")
    assert sent["short_description"].startswith('"}, "priority": "1"')
    assert "priority" not in sent


UPDATES: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    ("ack", "im.incident.ack", {}, {"state": "2"}),
    ("mitigate", "im.incident.mitigate", {"summary": "rolled back"}, {"work_notes": "rolled back"}),
    (
        "resolve",
        "im.incident.resolve",
        {"summary": "fixed"},
        {"state": "6", "close_code": "Solved (Permanently)", "close_notes": "fixed"},
    ),
    ("close", "im.incident.close", {}, {"state": "7"}),
    (
        "reopen",
        "im.incident.state_change",
        {"status": "open", "reason": "it is back"},
        {"state": "2", "work_notes": "it is back"},
    ),
    ("note", "im.incident.note", {"text": "paged the DBA"}, {"work_notes": "paged the DBA"}),
    (
        "severity",
        "im.incident.state_change",
        {"severity": "sev-3", "reason": "contained"},
        {"impact": "2", "urgency": "2", "work_notes": "contained"},
    ),
]


@pytest.mark.parametrize(("row", "type_", "data", "want"), UPDATES, ids=[u[0] for u in UPDATES])
def test_each_mapping_row_patches_the_kept_record(
    row: str, type_: str, data: dict[str, Any], want: dict[str, str]
) -> None:
    """Every later event PATCHes the record it created, with exactly the fields of its row."""
    channel = ServiceNowChannel()
    request = channel.render(message(type_, data, KEPT))
    assert request.method == "PATCH"
    assert request.url.startswith(f"https://acme.service-now.com/api/now/table/incident/{SYS_ID}?")
    assert body(request) == want
    done = channel.classify(message(type_, data, KEPT), request, reply(200, {"result": {}}))
    assert isinstance(done, Outcome) and done.kind == OutcomeKind.DELIVERED
    if "state" in want:
        assert done.state is not None and done.state.data["state"] == want["state"]
        assert done.state.external_id == SYS_ID and done.state.data["number"] == "INC0010001"


def test_mapping_overrides_replace_the_default_rows() -> None:
    """formatsettings.mapping replaces severity rows, state codes and the close code."""
    settings = {
        "auth": BASIC,
        "mapping": {
            "severity": {"SEV1": {"impact": "2", "urgency": "1"}},
            "status": {"resolve": "3"},
            "close_code": "Workaround provided",
        },
    }
    created = body(
        ServiceNowChannel().render(message("im.incident.declare", DECLARE, None, settings))
    )
    assert (created["impact"], created["urgency"]) == ("2", "1")
    resolved = ServiceNowChannel().render(message("im.incident.resolve", {}, KEPT, settings))
    assert orjson.loads(resolved.body) == {
        "state": "3",
        "close_code": "Workaround provided",
        "close_notes": "Resolved",
    }


def test_responses_are_classified_for_the_table_api() -> None:
    """201 keeps sys_id and number; 429 and 503 fail with the instance's Retry-After; another
    4xx fails with its body kept; a response without sys_id is a failure that says so."""
    channel, sent = ServiceNowChannel(), message("im.incident.declare", DECLARE)
    create = channel.render(sent)
    made = channel.classify(
        sent, create, reply(201, {"result": {"sys_id": SYS_ID, "number": "INC0010001"}})
    )
    assert isinstance(made, Outcome) and made.kind == OutcomeKind.DELIVERED
    assert made.state == ChannelState(
        SYS_ID, {"number": "INC0010001", "severity": "SEV1", "state": "1"}
    )
    for status in (429, 503):
        busy = channel.classify(
            sent, create, reply(status, {"error": "busy"}, **{"retry-after": "12"})
        )
        assert isinstance(busy, Outcome)
        assert (busy.kind, busy.status, busy.retry_after) == (OutcomeKind.FAILED, status, 12.0)
    bad = channel.classify(sent, create, reply(400, {"error": {"message": "Invalid field"}}))
    assert isinstance(bad, Outcome) and bad.kind == OutcomeKind.FAILED
    assert "Invalid field" in bad.body and bad.error == "HTTP 400"
    empty = channel.classify(sent, create, reply(201, {"result": {}}))
    assert isinstance(empty, Outcome) and "no sys_id" in empty.error


def test_a_later_event_without_a_record_creates_it_then_applies_its_change() -> None:
    """An ack for an incident with no record creates the record from the incident as the
    owner reads it, then PATCHes state 2 in the same attempt; a 429 on that PATCH keeps the
    new record so the retry does not create another."""
    view = {"id": "INC-7", "title": "Payments", "severity": "SEV2", "summary": "slow"}
    channel, sent = ServiceNowChannel(), message("im.incident.ack", {}, None, SETTINGS, view)
    create = channel.render(sent)
    made = body(create)
    assert (made["short_description"], made["impact"], made["urgency"]) == ("Payments", "1", "2")
    patch = channel.classify(
        sent, create, reply(201, {"result": {"sys_id": SYS_ID, "number": "INC1"}})
    )
    assert isinstance(patch, Request) and patch.method == "PATCH" and SYS_ID in patch.url
    assert body(patch) == {"state": "2"}
    busy = channel.classify(sent, patch, reply(429, **{"retry-after": "3"}))
    assert isinstance(busy, Outcome) and busy.retry_after == 3.0
    assert busy.state == ChannelState(SYS_ID, {"number": "INC1", "severity": "SEV2"})


def test_a_deleted_record_is_created_again() -> None:
    """A 404 on PATCH (the record was deleted in ServiceNow) creates a new record and applies
    the event to it."""
    view = {"id": "INC-7", "title": "Payments", "severity": "SEV2"}
    channel, sent = (
        ServiceNowChannel(),
        message("im.incident.note", {"text": "hi"}, KEPT, SETTINGS, view),
    )
    patch = channel.render(sent)
    again = channel.classify(sent, patch, reply(404, {"error": {"message": "No Record found"}}))
    assert isinstance(again, Request) and again.method == "POST"
    assert body(again)["correlation_id"] == "INC-7"
    fresh = "0" * 32
    note = channel.classify(
        sent, again, reply(201, {"result": {"sys_id": fresh, "number": "INC2"}})
    )
    assert isinstance(note, Request) and fresh in note.url and body(note) == {"work_notes": "hi"}
    done = channel.classify(sent, note, reply(200, {"result": {}}))
    assert isinstance(done, Outcome) and done.kind == OutcomeKind.DELIVERED
    assert done.state is not None and (done.state.external_id, done.state.data["number"]) == (
        fresh,
        "INC2",
    )


def test_settings_are_validated_naming_the_field() -> None:
    """Registration names each bad setting: auth, unknown keys, mapping rows, fixed fields the
    gateway or ServiceNow sets, and types that are not incident events."""
    spec = Spec(
        sink="https://acme.service-now.com",
        types=("im.alert.*",),
        format="servicenow",
        formatsettings={
            "mapping": {
                "severity": {"SEV9": {}, "SEV1": {"impact": "4", "urgency": "1"}},
                "colour": 1,
            },
            "fields": {"priority": "1", "sys_id": "x", "category": "network"},
            "extra": True,
        },
    )
    assert sorted(p.pointer for p in ServiceNowChannel().validate(spec)) == [
        "/formatsettings/auth",
        "/formatsettings/extra",
        "/formatsettings/fields/priority",
        "/formatsettings/fields/sys_id",
        "/formatsettings/mapping/colour",
        "/formatsettings/mapping/severity/SEV1",
        "/formatsettings/mapping/severity/SEV9",
        "/types/0",
    ]
    good = Spec(
        sink="https://acme.service-now.com",
        types=("im.incident.*",),
        format="servicenow",
        formatsettings=SETTINGS,
    )
    assert ServiceNowChannel().validate(good) == []
    assert ServiceNowChannel.SECRET_POINTERS == (
        "/auth/basic/password",
        "/auth/bearer",
        "/auth/oauth2/client_secret",
        "/inbound_secret",
    )


@dataclass
class Instance:
    """A ServiceNow instance: OAuth tokens, the incident table, scripted failures."""

    records: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    fail_next: list[tuple[str, int]] = field(default_factory=list)  # (method, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def token(request: HttpRequest) -> HttpResponse:
            form = parse_qs((await request.body()).decode())
            assert form["grant_type"] == ["client_credentials"]
            assert (form["client_id"], form["client_secret"]) == (["gw"], ["s3cret"])
            with self.lock:
                issued = f"tok-{len(self.tokens) + 1}"
                self.tokens.append(issued)
                self.valid = {issued}
            return JSONResponse(
                {"access_token": issued, "token_type": "Bearer", "expires_in": 1800}
            )

        async def table(request: HttpRequest) -> HttpResponse:
            sent: dict[str, Any] = orjson.loads(await request.body())
            check_table_api(request.method, sent)
            with self.lock:
                self.calls.append((request.method, request.url.path, sent))
                auth = request.headers.get("authorization", "")
                if auth.removeprefix("Bearer ") not in self.valid:
                    return JSONResponse({"error": {"message": "User Not Authenticated"}}, 401)
                if self.fail_next and self.fail_next[0][0] == request.method:
                    _, status = self.fail_next.pop(0)
                    return JSONResponse(
                        {"error": {"message": "busy"}}, status, headers={"Retry-After": "1"}
                    )
                sys_id = request.path_params.get("sys_id")
                if sys_id is None:
                    sys_id = uuid.uuid4().hex
                    number = f"INC{10001 + len(self.records):07d}"
                    self.records[sys_id] = {"sys_id": sys_id, "number": number, "state": "1"}
                    self.records[sys_id].update(sent)
                    return JSONResponse({"result": self.records[sys_id]}, 201)
                if sys_id not in self.records:
                    return JSONResponse({"error": {"message": "No Record found"}}, 404)
                self.records[sys_id].update(sent)
                return JSONResponse({"result": self.records[sys_id]})

        return Starlette(
            routes=[
                Route("/oauth_token.do", token, methods=["POST"]),
                Route("/api/now/table/incident", table, methods=["POST"]),
                Route("/api/now/table/incident/{sys_id}", table, methods=["PATCH"]),
            ]
        )


def register(
    client: httpx.Client, redis_client: redis.Redis, sink: str, formatsettings: dict[str, Any]
) -> str:
    """A subscription for the ServiceNow channel, its format settings stored with its spec."""
    created = client.post("/v1/subscriptions", json={"sink": sink, "types": ["im.incident.*"]})
    assert created.status_code == 201, created.text
    sub_id: str = created.json()["id"]
    stored = orjson.loads(redis_client.hget(keys.subscription(sub_id), "spec") or b"{}")
    stored.update(format="servicenow", formatsettings=formatsettings)
    redis_client.hset(keys.subscription(sub_id), "spec", orjson.dumps(stored))
    return sub_id


def test_the_dispatcher_keeps_one_record_through_oauth_429_and_401(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Through the real Dispatcher: the OAuth token is fetched once and reused; the create
    answered 429 with Retry-After is retried and makes one record; later events PATCH that
    record (a 429 on a PATCH retried as a PATCH); after a 401 the token is fetched again once
    and the update goes through."""
    instance = Instance()
    now = [T0]
    channel = ServiceNowChannel()
    with serve_in_thread(instance.app()) as url:
        oauth = {
            "oauth2": {
                "token_url": f"{url}/oauth_token.do",
                "client_id": "gw",
                "client_secret": "s3cret",
            }
        }
        sub_id = register(
            client, redis_client, url, {"auth": oauth, "fields": {"category": "network"}}
        )
        instance.fail_next.append(("POST", 429))
        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        assert deliver_once(settings, channel, lambda: now[0]) == 1  # 429: waits for Retry-After
        assert instance.records == {}
        now[0] += 5
        assert deliver_once(settings, channel, lambda: now[0]) == 1
        assert len(instance.records) == 1
        [(sys_id, record)] = instance.records.items()
        assert record["correlation_id"] == incident and record["category"] == "network"
        assert kept_state(settings.redis_url or "", sub_id, incident) == ChannelState(
            sys_id, {"number": "INC0010001", "severity": "SEV1", "state": "1"}
        )

        instance.fail_next.append(("PATCH", 429))
        publish(
            client,
            event("im.incident.ack", {}, imincidentid=incident),
            event("im.incident.note", {"text": "paged the DBA"}, imincidentid=incident),
        )
        assert deliver_once(settings, channel, lambda: now[0]) == 1  # the ack's 429 holds the lane
        now[0] += 5
        assert deliver_once(settings, channel, lambda: now[0]) == 2
        instance.valid.clear()  # the instance revoked the token
        publish(
            client, event("im.incident.resolve", {"summary": "failover"}, imincidentid=incident)
        )
        assert deliver_once(settings, channel, lambda: now[0]) == 1

    assert instance.tokens == ["tok-1", "tok-2"]  # once, then once more after the 401
    assert len(instance.records) == 1
    assert [c[0] for c in instance.calls] == [
        "POST",
        "POST",
        "PATCH",
        "PATCH",
        "PATCH",
        "PATCH",
        "PATCH",
    ]
    assert {c[1] for c in instance.calls[2:]} == {f"/api/now/table/incident/{sys_id}"}
    assert record["state"] == "6" and record["close_notes"] == "failover"
    assert record["work_notes"] == "paged the DBA"
    log = client.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["attempts"]
    assert sorted(a["outcome"] for a in log).count("delivered") == 4
    assert kept_state(settings.redis_url or "", sub_id, incident) == ChannelState(
        sys_id, {"number": "INC0010001", "severity": "SEV1", "state": "6"}
    )


def test_the_record_is_shown_in_the_incidents_external_refs(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Once the record is made, the incident (one read and the list) shows its sys_id and
    number under ``servicenow:<subscription>`` in external_refs, beside the refs it had."""
    instance = Instance()
    channel = ServiceNowChannel()
    with serve_in_thread(instance.app()) as url:
        oauth = {"token_url": f"{url}/oauth_token.do", "client_id": "gw", "client_secret": "s3cret"}
        sub_id = register(client, redis_client, url, {"auth": {"oauth2": oauth}})
        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        assert deliver_once(settings, channel, lambda: T0) == 1
    [(sys_id, record)] = instance.records.items()
    shown = client.get(f"/v1/incidents/{incident}").json()["external_refs"]
    assert shown[f"servicenow:{sub_id}"] == sys_id
    assert shown[f"servicenow:{sub_id}:number"] == record["number"]
    listed = client.get("/v1/incidents").json()["incidents"]
    assert [i["external_refs"] for i in listed if i["id"] == incident] == [shown]
