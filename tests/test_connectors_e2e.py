"""Connectors end to end: registered through the real API (format and formatsettings, the
secret sealed), delivered by the real workers to a real HTTP server playing the vendor."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incidents.settings import Settings
from incidents.store.secret_box import new_key
from tests.connector_support import register
from tests.delivery_support import FakeClock, Workers, publish
from tests.support import as_token, create_principal, event, serve_in_thread

DECLARE = {"title": "Checkout down", "severity": "SEV1", "service": "checkout"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(secret_key=new_key())


@dataclass
class Vendor:
    """Records each request; answers from ``queued`` (per method) first, then by path."""

    calls: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    queued: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw) if raw and raw[:1] in b"{[" else raw.decode()
        method, path = request.method, request.url.path
        with self.lock:
            self.calls.append((method, path, dict(request.headers), body))
            if self.queued and self.queued[0][0] == method:
                _, status = self.queued.pop(0)
                return JSONResponse({"error": "busy"}, status, headers={"Retry-After": "2"})
        if path == "/api/now/table/incident":
            return JSONResponse({"result": {"sys_id": "abc123", "number": "INC0010001"}}, 201)
        if path.startswith("/api/now/table/incident/"):
            return JSONResponse({"result": {"sys_id": "abc123", "number": "INC0010001"}})
        if path == "/token":
            return JSONResponse(
                {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 600}
            )
        if path == "/rest/api/3/issue":
            return JSONResponse({"id": "10001", "key": "OPS-1", "self": "x"}, 201)
        if path == "/v2/enqueue":
            return JSONResponse({"status": "success", "dedup_key": "x"}, 202)
        return Response("1" if "slack" in path else "", 200)

    def of(self, method: str) -> list[tuple[str, str, dict[str, str], Any]]:
        with self.lock:
            return [c for c in self.calls if c[0] == method]


@pytest.fixture
def vendor() -> Iterator[tuple[Vendor, str]]:
    found = Vendor()
    app = Starlette(
        routes=[Route("/{p:path}", found.handle, methods=["POST", "PATCH", "PUT", "GET"])]
    )
    with serve_in_thread(app) as url:
        yield found, url


def test_servicenow_basic_auth_one_record_patched_and_a_429_retry_makes_no_second(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """Declare creates one record (fields, correlation_id, basic auth with the stored
    password); a 429 on the create is retried once after Retry-After and makes no second
    record; the ack PATCHes the same sys_id with state 2."""
    found, url = vendor
    auth = {"basic": {"username": "svc-incidents", "password": "pw-1"}}
    fixed = {"assignment_group": "Operations"}
    register(client, {"sink": url, "format": "servicenow",
                      "formatsettings": {"auth": auth, "fields": fixed}})  # fmt: skip
    found.queued.append(("POST", 429))
    workers = Workers(settings, FakeClock())
    try:
        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        workers.run_until(lambda: len(found.of("POST")) == 2, timeout=20)
        publish(client, event("im.incident.ack", {}, imincidentid=incident))
        workers.run_until(lambda: len(found.of("PATCH")) == 1, timeout=20)
    finally:
        workers.close()
    posts = found.of("POST")
    assert [p[1] for p in posts] == ["/api/now/table/incident"] * 2  # the 429, then the one
    _, _, headers, body = posts[1]
    expected = "Basic " + base64.b64encode(b"svc-incidents:pw-1").decode()
    assert headers["authorization"] == expected
    assert body["short_description"] == "Checkout down" and body["correlation_id"] == incident
    assert body["assignment_group"] == "Operations"
    assert (body["impact"], body["urgency"]) == ("1", "1")
    [(_, path, _, patched)] = found.of("PATCH")
    assert path == "/api/now/table/incident/abc123" and patched["state"] == "2"


def test_jira_with_an_oauth2_token(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """Jira over OAuth2 client credentials: the token is fetched with the stored client
    secret, and the issue is created with it as a bearer token."""
    found, url = vendor
    oauth = {"token_url": f"{url}/token", "client_id": "gw", "client_secret": "cs-1"}
    fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}}
    register(client, {"sink": url, "format": "jira",
                      "formatsettings": {"auth": {"oauth2": oauth}, "fields": fields}})  # fmt: skip
    workers = Workers(settings, FakeClock())
    try:
        publish(client, event("im.incident.declare", DECLARE))
        workers.run_until(lambda: any(c[1] == "/rest/api/3/issue" for c in found.of("POST")), 20)
    finally:
        workers.close()
    token = [c for c in found.calls if c[1] == "/token"]
    assert len(token) == 1 and "cs-1" in str(token[0][3])
    [issue] = [c for c in found.calls if c[1] == "/rest/api/3/issue"]
    assert issue[2]["authorization"] == "Bearer tok-1"
    assert issue[3]["fields"]["summary"] == "Checkout down"
    assert issue[3]["fields"]["project"] == {"key": "OPS"}


def test_pagerduty_trigger_acknowledge_resolve_with_the_routing_key(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """PagerDuty gets trigger, acknowledge and resolve, each with the stored routing key and
    the incident id as dedup_key."""
    found, url = vendor
    register(client, {"sink": f"{url}/v2/enqueue", "format": "pagerduty",
                      "formatsettings": {"routing_key": "R0123456789"}})  # fmt: skip
    workers = Workers(settings, FakeClock())
    try:
        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        publish(
            client,
            event("im.incident.ack", {}, imincidentid=incident),
            event("im.incident.resolve", {"summary": "failover"}, imincidentid=incident),
        )
        workers.run_until(lambda: len(found.of("POST")) == 3, timeout=20)
    finally:
        workers.close()
    bodies = [c[3] for c in found.of("POST")]
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    assert {b["routing_key"] for b in bodies} == {"R0123456789"}
    assert {b["dedup_key"] for b in bodies} == {incident}


def test_the_delivery_log_shows_each_request_with_its_secrets_masked(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """Each attempt in the delivery log names the request it made (method, URL, the start of
    the body) beside the response, and the routing key in that body reads ***."""
    found, url = vendor
    sub_id = register(client, {"sink": f"{url}/v2/enqueue", "format": "pagerduty",
                               "formatsettings": {"routing_key": "R0123456789"}})  # fmt: skip
    workers = Workers(settings, FakeClock())
    try:
        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        workers.run_until(lambda: len(found.of("POST")) == 1, timeout=20)
        (entry,) = workers.deliveries(client, sub_id)
    finally:
        workers.close()
    request = entry["request"]
    assert request["method"] == "POST" and request["url"] == f"{url}/v2/enqueue"
    sent = json.loads(request["body"])
    assert sent["dedup_key"] == incident and sent["routing_key"] == "***"
    assert "R0123456789" not in json.dumps(entry)
    assert entry["outcome"] == "delivered" and entry["status_code"] == 202


@pytest.mark.parametrize("format_", ["slack", "teams"])
def test_chat_gets_one_message_per_event(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str], format_: str
) -> None:
    """Slack and Teams get one message per event, in order."""
    found, url = vendor
    register(client, {"sink": f"{url}/{format_}/hook", "format": format_})
    workers = Workers(settings, FakeClock())
    try:
        incident = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        publish(client, event("im.incident.note", {"text": "rolled back"}, imincidentid=incident))
        workers.run_until(lambda: len(found.of("POST")) == 2, timeout=20)
    finally:
        workers.close()
    bodies = [c[3] for c in found.of("POST")]
    assert len(bodies) == 2
    if format_ == "slack":
        assert all(b["text"] and b["blocks"] for b in bodies)
    else:
        assert all(b["type"] == "message" for b in bodies)
        card = bodies[0]["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"


def test_a_worker_without_the_key_records_a_failed_attempt_naming_it(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """A worker that has no key does not crash on a sealed secret: the attempt fails, saying
    INCIDENTS_SECRET_KEY, and nothing is sent."""
    found, url = vendor
    sub_id = register(client, {"sink": f"{url}/v2/enqueue", "format": "pagerduty",
                               "formatsettings": {"routing_key": "R0123456789"}})  # fmt: skip
    workers = Workers(settings.replace(secret_key=None), FakeClock())
    try:
        publish(client, event("im.incident.declare", DECLARE))
        workers.run_until(lambda: bool(workers.deliveries(client, sub_id)), timeout=20)
        first = workers.deliveries(client, sub_id)[0]
    finally:
        workers.close()
    assert first["outcome"] == "failed" and "INCIDENTS_SECRET_KEY" in first["error"]
    assert found.calls == []


def test_a_confidential_field_never_reaches_a_connector_whose_owner_lacks_clearance(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """The declare's summary is confidential: connector subscriptions (PagerDuty with the
    incident in custom_details, Slack) of an owner cleared for internal get the incident
    without it, anywhere in what is sent; the field is judged before rendering."""
    found, url = vendor
    secret_text = "3% of card payments fail at the acquirer"
    owner = create_principal(
        client, name="oncall", roles=["subscriber"], tenant="acme", clearance="internal"
    )
    with as_token(client, owner["token"]) as mine:
        register(mine, {"sink": f"{url}/v2/enqueue", "format": "pagerduty",
                        "formatsettings": {"routing_key": "R0123456789"}})  # fmt: skip
        register(mine, {"sink": f"{url}/slack/hook", "format": "slack"})
    producer = create_principal(client, name="producer", tenant="acme", clearance="restricted")
    data = {**DECLARE, "summary": secret_text}
    with as_token(client, producer["token"]) as p:
        incident = publish(p, event("im.incident.declare", data, imdataclass="internal"))
    assert incident
    workers = Workers(settings, FakeClock())
    try:
        workers.run_until(lambda: len(found.of("POST")) == 2, timeout=20)
    finally:
        workers.close()
    sent = found.of("POST")
    assert {c[1] for c in sent} == {"/v2/enqueue", "/slack/hook"}
    for _, _, _, body in sent:
        assert "Checkout down" in orjson.dumps(body).decode()
        assert secret_text not in orjson.dumps(body).decode()
