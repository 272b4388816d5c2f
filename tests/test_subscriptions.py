"""The subscriptions API: create, read, change, delete, ownership, safety, handshake, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import svix.webhooks

from incidents.app import create_app
from incidents.settings import Settings
from tests.support import ADMIN_TOKEN, event, serve_in_thread
from tests.test_delivery_support import Receiver, Workers, publish, receiver, subscribe


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


@pytest.fixture
def workers(settings: Settings) -> Iterator[Workers]:
    found = Workers(settings)
    try:
        yield found
    finally:
        found.close()


def principal(client: httpx.Client, name: str, **fields: Any) -> tuple[str, httpx.Client]:
    body = {"name": name, "roles": ["subscriber"], **fields}
    response = client.post("/v1/principals", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    other = httpx.Client(
        base_url=str(client.base_url),
        headers={"Authorization": f"Bearer {created['token']}"},
        timeout=10,
    )
    return created["id"], other


def test_create_shows_the_secret_once(client: httpx.Client) -> None:
    """The create response carries id, status and secret; later reads never show the secret."""
    created = client.post(
        "/v1/subscriptions",
        json={"sink": "https://example.com/hook", "types": ["im.alert.*"], "description": "x"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "active" and body["secret"].startswith("whsec_")
    assert body["protocol"] == "HTTP" and body["config"]["mode"] == "structured"
    read = client.get(f"/v1/subscriptions/{body['id']}").json()
    assert "secret" not in read and read["types"] == ["im.alert.*"]
    listed = client.get("/v1/subscriptions").json()["subscriptions"]
    assert [s["id"] for s in listed] == [body["id"]]
    assert all("secret" not in s for s in listed)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"sink": "ftp://example.com"}, "/sink"),
        ({}, "/sink"),
        ({"sink": "https://example.com", "protocol": "MQTT"}, "/protocol"),
        ({"sink": "https://example.com", "types": ["im.*.x"]}, "/types/0"),
        ({"sink": "https://example.com", "filters": [{"sql": "x"}]}, "/filters/0/sql"),
        ({"sink": "https://example.com", "config": {"mode": "batch"}}, "/config/mode"),
        (
            {"sink": "https://example.com", "protocolsettings": {"headers": {"webhook-id": "x"}}},
            "/protocolsettings/headers/webhook-id",
        ),
        ({"sink": "https://example.com", "colour": "red"}, "/colour"),
    ],
)
def test_bad_subscriptions_are_400_with_a_pointer(
    client: httpx.Client, body: dict[str, Any], where: str
) -> None:
    """Each invalid field is a 400 problem whose errors point at it."""
    response = client.post("/v1/subscriptions", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert where in [e["pointer"] for e in response.json()["errors"]]


def test_patch_changes_routing_and_delete_removes(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """After a PATCH of types the new type is delivered; after DELETE nothing is."""
    sub = subscribe(client, rx, "/p", types=["im.alert.trigger"])
    patched = client.patch(f"/v1/subscriptions/{sub['id']}", json={"types": ["im.incident.*"]})
    assert patched.status_code == 200 and patched.json()["types"] == ["im.incident.*"]
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: len(rx.at("/p")) == 1)
    assert client.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
    assert client.get(f"/v1/subscriptions/{sub['id']}").status_code == 404
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: not workers.pump.pending())
    assert len(rx.at("/p")) == 1


def test_subscribers_see_only_their_own(client: httpx.Client) -> None:
    """A subscriber lists and reads only its subscriptions; another's is a 404; producers
    without the subscriber role are refused."""
    alice_id, alice = principal(client, "alice")
    _, bob = principal(client, "bob")
    _, producer = principal(client, "prod", roles=["producer"])
    with alice, bob, producer:
        mine = alice.post("/v1/subscriptions", json={"sink": "https://example.com/a"}).json()
        assert mine["owner"] == alice_id
        assert bob.get("/v1/subscriptions").json()["subscriptions"] == []
        assert bob.get(f"/v1/subscriptions/{mine['id']}").status_code == 404
        assert bob.delete(f"/v1/subscriptions/{mine['id']}").status_code == 404
        assert producer.get("/v1/subscriptions").status_code == 403
        assert bob.get("/v1/dead-letters").status_code == 403
    assert len(client.get("/v1/subscriptions").json()["subscriptions"]) == 1


def test_private_sinks_are_refused_at_registration_and_at_delivery(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """With private sinks off, 127.0.0.1 is refused when registering, and a sink registered
    earlier is refused again when connecting: nothing reaches it and the log says why."""
    strict = settings.replace(allow_private_sinks=False)
    with (
        serve_in_thread(create_app(strict)) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as guarded,
    ):
        for sink in (rx.sink("/x"), "http://localhost:9/x", "http://[::1]/x", "http://10.1.2.3/"):
            refused = guarded.post("/v1/subscriptions", json={"sink": sink})
            assert refused.status_code == 400, sink
            assert "not a public address" in refused.json()["detail"]
    sub = subscribe(client, rx, "/private")
    publish(client, event("im.incident.declare"))
    strict_workers = Workers(strict)
    try:
        strict_workers.run_until(lambda: bool(strict_workers.deliveries(client, sub["id"])))
        attempt = strict_workers.deliveries(client, sub["id"])[0]
    finally:
        strict_workers.close()
    assert attempt["outcome"] == "refused"
    assert "127.0.0.1" in attempt["error"]
    assert rx.at("/private") == []


def test_handshake_activates_and_grants_a_rate(client: httpx.Client, rx: Receiver) -> None:
    """With config.handshake the sink gets OPTIONS with WebHook-Request-Origin; an allowed
    origin activates the subscription and WebHook-Allowed-Rate becomes its rate."""
    rx.handshake_reply = {"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "120"}
    created = subscribe(client, rx, "/hs", config={"handshake": True})
    assert created["status"] == "active" and created["rate"] == 120
    assert rx.handshakes[0]["webhook-request-origin"] == "127.0.0.1"


def test_a_refused_handshake_leaves_the_subscription_disabled(
    client: httpx.Client, rx: Receiver
) -> None:
    """Without WebHook-Allowed-Origin the subscription exists but is disabled, with the reason."""
    created = subscribe(client, rx, "/no", config={"handshake": True})
    assert created["status"] == "disabled"
    assert "WebHook-Allowed-Origin missing" in created["reason"]
    rx.handshake_reply = {"WebHook-Allowed-Origin": "127.0.0.1"}
    enabled = client.patch(f"/v1/subscriptions/{created['id']}", json={"status": "active"})
    assert enabled.json()["status"] == "active"


def test_after_rotation_deliveries_carry_both_signatures(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """During the grace period each delivery verifies with the old and with the new secret."""
    sub = subscribe(client, rx, "/rot")
    old = rx.secrets["/rot"]
    rotated = client.post(f"/v1/subscriptions/{sub['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: len(rx.at("/rot")) == 1)
    got = rx.at("/rot")[0]
    assert got.verified
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    svix.webhooks.Webhook(new).verify(got.body, got.headers)
    svix.webhooks.Webhook(old).verify(got.body, got.headers)


def test_a_revoked_owner_gets_nothing_and_the_log_says_why(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Once the owner principal is revoked, matching events are withheld (rule owner-revoked)."""
    owner_id, owner = principal(client, "carol", clearance="restricted")
    with owner:
        response = owner.post("/v1/subscriptions", json={"sink": rx.sink("/carol")})
        sub = response.json()
    assert client.delete(f"/v1/principals/{owner_id}").status_code in (200, 204)
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: bool(workers.deliveries(client, sub["id"])))
    (entry,) = workers.deliveries(client, sub["id"])
    assert entry["outcome"] == "withheld" and entry["rule"] == "owner-revoked"
    assert rx.at("/carol") == []


def test_replay_redelivers_events_since_a_time_under_new_ids(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Replay queues the stored events since the given time that match now, with fresh ids."""
    sub = subscribe(client, rx, "/replay")
    publish(client, event("im.incident.declare"), event("im.incident.declare"))
    workers.run_until(lambda: len(rx.at("/replay")) == 2)
    first_ids = {r.headers["webhook-id"] for r in rx.at("/replay")}
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/replay", json={"since": "2000-01-01T00:00:00Z"}
    )
    assert response.status_code == 202 and response.json()["queued"] == 2
    workers.run_until(lambda: len(rx.at("/replay")) == 4)
    again = rx.at("/replay")[2:]
    assert [r.event["id"] for r in again] == [r.event["id"] for r in rx.at("/replay")[:2]]
    assert first_ids.isdisjoint(r.headers["webhook-id"] for r in again)
    assert client.post(f"/v1/subscriptions/{sub['id']}/replay", json={}).status_code == 400


def test_continuous_failure_disables_after_the_configured_time(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A sink that keeps failing for INCIDENTS_DISABLE_AFTER is disabled with that reason."""
    sub = subscribe(client, rx, "/flaky")
    rx.scripts["/flaky"] = [(500, {})] * 10
    publish(client, event("im.incident.declare"))
    impatient = Workers(settings.replace(disable_after=0.3))
    try:
        impatient.run_until(
            lambda: client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "disabled"
        )
    finally:
        impatient.close()
    assert "failing continuously" in client.get(f"/v1/subscriptions/{sub['id']}").json()["reason"]
