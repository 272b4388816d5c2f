"""Two-way sync end to end: connector subscriptions registered through the API, the incident
delivered to a real HTTP server playing the vendor by the real workers, then the vendor's
webhook, signed as the vendor signs it, posted to the inbound endpoint."""

from __future__ import annotations

import hashlib
import hmac
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incidents.settings import Settings
from incidents.store.secret_box import new_key
from tests.connector_support import register
from tests.delivery_support import FakeClock, Receiver, Workers, publish, subscribe
from tests.support import event, serve_in_thread

DECLARE = {"title": "Checkout down", "severity": "SEV1", "service": "checkout"}
SECRET = "inbound-secret-1"
JIRA_FIELDS = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(secret_key=new_key())


@dataclass
class Vendor:
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw) if raw[:1] in (b"{", b"[") else None
        with self.lock:
            self.calls.append((request.method, request.url.path, body))
        path = request.url.path
        if path == "/api/now/table/incident":
            return JSONResponse({"result": {"sys_id": "abc123", "number": "INC0010001"}}, 201)
        if path.startswith("/api/now/table/incident/"):
            return JSONResponse({"result": {"sys_id": "abc123"}})
        if path == "/rest/api/3/issue":
            return JSONResponse({"id": "10001", "key": "OPS-1", "self": "x"}, 201)
        if path.endswith("/transitions") and request.method == "GET":
            names = ("To Do", "In Progress", "Done")
            offered = [{"id": str(i), "name": n, "to": {"name": n}} for i, n in enumerate(names)]
            return JSONResponse({"transitions": offered})
        if path.endswith("/enqueue"):
            return JSONResponse({"status": "success"}, 202)
        return Response(status_code=204)

    def of(self, method: str, suffix: str = "") -> list[tuple[str, str, Any]]:
        with self.lock:
            return [c for c in self.calls if c[0] == method and c[1].endswith(suffix)]


@pytest.fixture
def vendor() -> Iterator[tuple[Vendor, str]]:
    found = Vendor()
    app = Starlette(
        routes=[Route("/{p:path}", found.handle, methods=["POST", "PATCH", "PUT", "GET"])]
    )
    with serve_in_thread(app) as url:
        yield found, url


def hexmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client: httpx.Client, sub_id: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """Post as the vendor does: no gateway token, only the vendor's own proof."""
    return httpx.post(
        f"{client.base_url}/v1/connectors/{sub_id}/inbound",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )


def pagerduty_webhook(kind: str, incident: str, **data: Any) -> bytes:
    if kind == "incident.annotated":
        body = {"incident": {"id": "PD123", "type": "incident_reference"}, "content": data["text"]}
    else:
        body = {"id": "PD123", "type": "incident", "incident_key": incident, **data}
    webhook = {"event": {"id": str(uuid.uuid4()), "event_type": kind, "resource_type": "incident",
                         "occurred_at": "2030-01-01T00:00:00Z",
                         "agent": {"id": "PU1", "summary": "Dana Oncall", "type": "user_reference"},
                         "data": body}}  # fmt: skip
    return orjson.dumps(webhook)


def pd_signed(body: bytes) -> dict[str, str]:
    return {"X-PagerDuty-Signature": f"v1={hexmac(body, 'old-secret')},v1={hexmac(body)}"}


def jira_webhook(items: list[dict[str, str]], key: str = "OPS-1") -> bytes:
    return orjson.dumps({"timestamp": 1, "webhookEvent": "jira:issue_updated",
                         "user": {"accountId": "a1", "displayName": "Jo Jira"},
                         "issue": {"id": "10001", "key": key, "fields": {"labels": []}},
                         "changelog": {"id": str(uuid.uuid4()), "items": items}})  # fmt: skip


def hub(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature": f"sha256={hexmac(body)}"}


def timeline(client: httpx.Client, incident: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/incidents/{incident}/timeline")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["timeline"]
    return found


def declared(settings: Settings, client: httpx.Client, found: Vendor, sub_id: str) -> str:
    """Declare an incident and let the workers deliver it to the vendor."""
    workers = Workers(settings, FakeClock())
    try:
        incident: str = publish(client, event("im.incident.declare", DECLARE))[0]["incident"]
        workers.run_until(lambda: bool(workers.deliveries(client, sub_id)), timeout=20)
    finally:
        workers.close()
    return incident


def pd_sub(client: httpx.Client, url: str, **more: Any) -> str:
    settings = {"routing_key": "R0123", "inbound_secret": SECRET, **more}
    return register(client, {"sink": f"{url}/v2/enqueue", "format": "pagerduty",
                             "formatsettings": settings})  # fmt: skip


def jira_sub(client: httpx.Client, url: str, **more: Any) -> str:
    auth = {"basic": {"username": "bot", "password": "pw"}}
    settings = {"auth": auth, "fields": JIRA_FIELDS, **more, "inbound_secret": SECRET}
    return register(client, {"sink": url, "format": "jira", "formatsettings": settings})


def test_pagerduty_acknowledge_becomes_an_ack_by_the_person_with_rotating_signatures(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """A PagerDuty incident.acknowledged signed with two v1 signatures (rotation) acks the
    incident: source /connectors/<id>, imactor the PagerDuty user, the change in the data."""
    found, url = vendor
    sub_id = pd_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    body = pagerduty_webhook("incident.acknowledged", incident, status="acknowledged")
    answer = post(client, sub_id, body, pd_signed(body))
    assert answer.status_code == 202, answer.text
    ack = timeline(client, incident)[-1]
    assert ack["type"] == "im.incident.ack"
    assert ack["source"] == f"/connectors/{sub_id}" and ack["actor"] == "Dana Oncall"
    stored = client.get(f"/v1/incidents/{incident}").json()
    assert stored["acknowledged_at"]
    assert post(client, sub_id, body, pd_signed(body)).status_code == 202  # a retry: stored once
    assert [e["type"] for e in timeline(client, incident)].count("im.incident.ack") == 1


@pytest.mark.parametrize("how", ["missing", "wrong"])
def test_an_unverified_webhook_is_401_and_stores_nothing(
    settings: Settings,
    client: httpx.Client,
    vendor: tuple[Vendor, str],
    redis_client: redis.Redis,
    how: str,
) -> None:
    """A webhook without, or with a wrong, signature is a 401 problem and nothing is stored."""
    found, url = vendor
    sub_id = pd_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    before = len(timeline(client, incident))
    keys_before = set(redis_client.keys("*"))
    body = pagerduty_webhook("incident.resolved", incident)
    headers = {} if how == "missing" else {"X-PagerDuty-Signature": "v1=" + "0" * 64}
    answer = post(client, sub_id, body, headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert len(timeline(client, incident)) == before
    assert set(redis_client.keys("*")) - keys_before == set()


def test_unknown_subscription_is_404_and_unknown_incident_is_ignored_with_202(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """An unknown subscription is a 404; a payload for an incident the subscription never
    got is accepted and ignored (202), never a 5xx."""
    _, url = vendor
    sub_id = pd_sub(client, url)
    body = pagerduty_webhook("incident.resolved", "INC-999")
    assert post(client, "sub_nope", body, pd_signed(body)).status_code == 404
    answer = post(client, sub_id, body, pd_signed(body))
    assert answer.status_code == 202 and answer.json()["status"] == "ignored"


def test_a_move_the_state_machine_refuses_becomes_a_note(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """PagerDuty resolving a closed incident is not a 409 to PagerDuty: a note says so."""
    found, url = vendor
    sub_id = pd_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    workers = Workers(settings, FakeClock())
    try:
        publish(client, event("im.incident.resolve", {}, imincidentid=incident))
        publish(client, event("im.incident.close", {}, imincidentid=incident))
        workers.run_until(lambda: len(found.of("POST", "/enqueue")) == 3, timeout=20)
    finally:
        workers.close()
    body = pagerduty_webhook("incident.reopened", incident)
    answer = post(client, sub_id, body, pd_signed(body))
    assert answer.status_code == 202, answer.text
    note = timeline(client, incident)[-1]
    assert note["type"] == "im.incident.note"
    assert "does not allow" in note["data"]["text"]
    assert client.get(f"/v1/incidents/{incident}").json()["status"] == "closed"


def test_a_field_the_system_does_not_own_becomes_a_note_not_a_change(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """PagerDuty owns status and notes by default: its priority P3 becomes a note saying what
    it changed, and the severity stays; with owns ["severity"], P3 -> SEV3 is applied."""
    found, url = vendor
    sub_id = pd_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    body = pagerduty_webhook("incident.priority_updated", incident, priority={"summary": "P3"})
    assert post(client, sub_id, body, pd_signed(body)).status_code == 202
    note = timeline(client, incident)[-1]
    assert note["type"] == "im.incident.note" and "priority P3" in note["data"]["text"]
    assert "does not own severity" in note["data"]["text"]
    assert client.get(f"/v1/incidents/{incident}").json()["severity"] == "SEV1"
    owner = pd_sub(client, url, owns=["severity"])
    incident2 = declared(settings, client, found, owner)
    body = pagerduty_webhook("incident.priority_updated", incident2, priority={"summary": "P3"})
    assert post(client, owner, body, pd_signed(body)).status_code == 202
    assert client.get(f"/v1/incidents/{incident2}").json()["severity"] == "SEV3"


def test_owns_is_validated_and_the_inbound_secret_is_masked(
    client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """owns names only known fields (400 naming the entry); the inbound secret reads ***."""
    _, url = vendor
    settings = {"routing_key": "R", "owns": ["status", "colour"]}
    spec = {"sink": f"{url}/v2/enqueue", "format": "pagerduty", "types": ["im.incident.*"]}
    bad = client.post("/v1/subscriptions", json={**spec, "formatsettings": settings})
    assert bad.status_code == 400
    assert any(e["pointer"] == "/formatsettings/owns/1" for e in bad.json()["errors"])
    sub_id = pd_sub(client, url)
    shown = client.get(f"/v1/subscriptions/{sub_id}").json()
    assert shown["formatsettings"]["inbound_secret"] == "***"


def test_jira_done_resolves_when_it_owns_status_and_its_echo_is_dropped(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """Jira's webhook for the transition the gateway just made ("In Progress" for an ack)
    creates no event; a person moving the issue to "Done" resolves the incident."""
    found, url = vendor
    sub_id = jira_sub(client, url, owns=["status", "notes"])
    incident = declared(settings, client, found, sub_id)
    workers = Workers(settings, FakeClock())
    try:
        publish(client, event("im.incident.ack", {}, imincidentid=incident))
        workers.run_until(lambda: bool(found.of("POST", "/transitions")), timeout=20)
    finally:
        workers.close()
    before = len(timeline(client, incident))
    echo = jira_webhook([{"field": "status", "fromString": "To Do", "toString": "In Progress"}])
    answer = post(client, sub_id, echo, hub(echo))
    assert answer.status_code == 202 and answer.json()["dropped"], answer.text
    assert len(timeline(client, incident)) == before
    done = jira_webhook([{"field": "status", "fromString": "In Progress", "toString": "Done"}])
    assert post(client, sub_id, done, hub(done)).status_code == 202
    last = timeline(client, incident)[-1]
    assert last["type"] == "im.incident.resolve" and last["actor"] == "Jo Jira"
    assert client.get(f"/v1/incidents/{incident}").json()["status"] == "resolved"


def test_a_title_change_is_applied_when_the_system_owns_the_title(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """Jira renaming the issue retitles the incident when the subscription owns `title`: an
    im.incident.state_change with the new title, by the person in Jira."""
    found, url = vendor
    owning = jira_sub(client, url, owns=["title", "notes"])
    incident = declared(settings, client, found, owning)
    renamed = jira_webhook(
        [{"field": "summary", "fromString": "Checkout down", "toString": "Checkout slow"}]
    )
    assert post(client, owning, renamed, hub(renamed)).status_code == 202
    last = timeline(client, incident)[-1]
    assert last["type"] == "im.incident.state_change" and last["actor"] == "Jo Jira"
    assert client.get(f"/v1/incidents/{incident}").json()["title"] == "Checkout slow"


def test_a_title_change_the_system_does_not_own_is_only_a_note(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """With the default ownership (notes only) a renamed Jira issue leaves the title alone and
    becomes a note saying what Jira changed."""
    found, url = vendor
    sub_id = jira_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    renamed = jira_webhook(
        [{"field": "summary", "fromString": "Checkout down", "toString": "Something else"}]
    )
    assert post(client, sub_id, renamed, hub(renamed)).status_code == 202
    note = timeline(client, incident)[-1]
    assert note["type"] == "im.incident.note"
    assert client.get(f"/v1/incidents/{incident}").json()["title"] == DECLARE["title"]


def test_jira_comment_becomes_a_note_but_its_own_comment_coming_back_does_not(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """comment_created by a person is a note; the gateway's own comment coming back is not."""
    found, url = vendor
    sub_id = jira_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    publish(client, event("im.incident.note", {"text": "rolled back"}, imincidentid=incident))

    def comment(text: str, n: int) -> bytes:
        paragraph = {"type": "paragraph", "content": [{"type": "text", "text": text}]}
        body = {"type": "doc", "version": 1, "content": [paragraph]}
        issue = {"id": "10001", "key": "OPS-1", "fields": {}}
        said = {"id": str(n), "author": {"displayName": "Jo Jira"}, "body": body}
        return orjson.dumps(
            {"webhookEvent": "comment_created", "timestamp": n, "issue": issue, "comment": said}
        )

    before = len(timeline(client, incident))
    mine = comment("rolled back", 1)
    assert post(client, sub_id, mine, hub(mine)).status_code == 202
    assert len(timeline(client, incident)) == before
    theirs = comment("customer confirms it works", 2)
    assert post(client, sub_id, theirs, hub(theirs)).status_code == 202
    note = timeline(client, incident)[-1]
    assert note["type"] == "im.incident.note"
    assert note["data"]["text"] == "customer confirms it works"


def test_servicenow_record_echo_is_dropped_and_its_resolve_is_a_note_by_default(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """ServiceNow's business rule firing on the gateway's own PATCH (state 2) creates no
    event; state 6 from a person is a note (ServiceNow owns only notes by default), once."""
    found, url = vendor
    auth = {"basic": {"username": "svc", "password": "pw"}}
    sub_id = register(client, {"sink": url, "format": "servicenow", "formatsettings": {
        "auth": auth, "inbound_secret": SECRET}})  # fmt: skip
    incident = declared(settings, client, found, sub_id)
    workers = Workers(settings, FakeClock())
    try:
        publish(client, event("im.incident.ack", {}, imincidentid=incident))
        workers.run_until(lambda: bool(found.of("PATCH")), timeout=20)
    finally:
        workers.close()

    def record(state: str, count: int) -> bytes:
        return orjson.dumps({"result": {"sys_id": "abc123", "number": "INC0010001",
                                        "state": state, "impact": "1", "urgency": "1",
                                        "short_description": "Checkout down",
                                        "correlation_id": incident, "sys_mod_count": str(count),
                                        "sys_updated_by": "sam.admin"}})  # fmt: skip

    bearer = {"Authorization": f"Bearer {SECRET}"}
    before = len(timeline(client, incident))
    assert post(client, sub_id, record("2", 3), bearer).status_code == 202
    assert len(timeline(client, incident)) == before
    assert post(client, sub_id, record("2", 3), {"Authorization": "Bearer nope"}).status_code == 401
    assert post(client, sub_id, record("6", 4), bearer).status_code == 202
    assert post(client, sub_id, record("6", 5), bearer).status_code == 202  # fired again
    after = timeline(client, incident)[before:]
    assert [e["type"] for e in after] == ["im.incident.note"]
    assert "state Resolved (6)" in after[0]["data"]["text"] and after[0]["actor"] == "sam.admin"
    assert client.get(f"/v1/incidents/{incident}").json()["status"] == "open"


def test_an_inbound_event_reaches_other_subscribers_but_not_its_own(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str], rx: Receiver
) -> None:
    """PagerDuty resolving the incident is delivered to a CloudEvents subscriber, and never
    sent back to PagerDuty (no resolve to /v2/enqueue)."""
    found, url = vendor
    sub_id = pd_sub(client, url)
    subscribe(client, rx, "/hook", types=["im.incident.resolve"])
    incident = declared(settings, client, found, sub_id)
    body = pagerduty_webhook("incident.resolved", incident, status="resolved")
    assert post(client, sub_id, body, pd_signed(body)).status_code == 202
    workers = Workers(settings, FakeClock())
    try:
        workers.run_until(lambda: bool(rx.at("/hook")), timeout=20)
        workers.run_until(lambda: True, timeout=5)  # one more round for any stray delivery
    finally:
        workers.close()
    [got] = rx.at("/hook")
    assert got.event["type"] == "im.incident.resolve"
    assert got.event["imorigin"] == sub_id
    actions = [c[2]["event_action"] for c in found.of("POST", "/enqueue")]
    assert actions == ["trigger"]
    assert [d["outcome"] for d in Workers(settings).deliveries(client, sub_id)] == ["delivered"]


def test_an_inbound_webhook_carrying_a_traceparent_continues_its_trace(
    settings: Settings, client: httpx.Client, vendor: tuple[Vendor, str]
) -> None:
    """The event an inbound webhook becomes is kept with the webhook's traceparent."""
    found, url = vendor
    sub_id = pd_sub(client, url)
    incident = declared(settings, client, found, sub_id)
    body = pagerduty_webhook("incident.acknowledged", incident, status="acknowledged")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    answer = post(client, sub_id, body, {**pd_signed(body), "traceparent": traceparent})
    assert answer.status_code == 202, answer.text
    ack = timeline(client, incident)[-1]
    stored = client.get(f"/v1/events/{ack['id']}", params={"source": ack["source"]})
    assert stored.status_code == 200, stored.text
    assert stored.json()["event"]["traceparent"] == traceparent
