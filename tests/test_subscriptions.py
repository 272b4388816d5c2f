"""The subscriptions API: create, read, change, delete, ownership, safety, handshake, secrets."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis

from incidents.delivery.address_guard import address_problem, sink_problem
from incidents.settings import Settings
from incidents.store import keys
from incidents.subscriptions.spec import Spec
from incidents.subscriptions.subscription import MAX_PREVIOUS_SECRETS, new_subscription, rotated
from tests.delivery_support import Receiver, Workers, fake_clock_workers, publish, subscribe
from tests.support import TEST_TLS, admin_gateway, event


def principal(client: httpx.Client, name: str, **fields: Any) -> tuple[str, httpx.Client]:
    body = {"name": name, "roles": ["subscriber"], **fields}
    response = client.post("/v1/principals", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    other = httpx.Client(
        verify=TEST_TLS,
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
        ({"sink": "https://example.com", "filters": [{"sql": "x LIKE 1"}]}, "/filters/0/sql"),
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
    workers.run_until(lambda: not workers.scheduler.pending())
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
        admin_gateway(strict) as guarded,
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
    import svix.webhooks  # here: importing svix takes a quarter second

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
    # Two incidents: each keeps its order, but the two may arrive either way round.
    assert sorted(r.event["id"] for r in again) == sorted(
        r.event["id"] for r in rx.at("/replay")[:2]
    )
    assert first_ids.isdisjoint(r.headers["webhook-id"] for r in again)
    assert client.post(f"/v1/subscriptions/{sub['id']}/replay", json={}).status_code == 400


def test_continuous_failure_disables_after_the_configured_time(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A sink that keeps failing for INCIDENTS_DISABLE_AFTER is disabled with that reason."""
    sub = subscribe(client, rx, "/flaky")
    rx.scripts["/flaky"] = [(500, {})] * 10
    publish(client, event("im.incident.declare"))
    with fake_clock_workers(settings.replace(disable_after=0.3), rx) as impatient:
        impatient.run_until(
            lambda: client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "disabled"
        )
    assert "failing continuously" in client.get(f"/v1/subscriptions/{sub['id']}").json()["reason"]


@pytest.mark.parametrize(
    "address",
    [
        "fc00::1",  # unique local
        "fd12:3456:789a::1",  # unique local
        "fe80::1",  # link-local
        "fec0::1",  # site-local (deprecated)
        "ff02::1",  # multicast
        "::1",
        "::",
        "2001:db8::1",  # documentation
        "3fff::1",  # documentation (RFC 9637)
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "::ffff:100.64.0.1",  # IPv4-mapped CGNAT
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "100::1",  # discard-only
        "100.64.0.1",  # CGNAT, first
        "100.127.255.254",  # CGNAT, last
        "169.254.169.254",  # link-local (cloud metadata)
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "240.0.0.1",  # reserved
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    """Private, local, CGNAT, documentation and reserved addresses (IPv4 and IPv6, also
    inside IPv4-mapped and 6to4 addresses) are refused; the reason is named."""
    assert address_problem(ipaddress.ip_address(address)) is not None
    sink = f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"
    problem = asyncio.run(sink_problem(sink, allow_private=False, allow_insecure=True))
    assert problem is not None and "not a public address" in problem


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "100.128.0.1", "2606:4700::1111", "2002:808:808::1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    """Public unicast addresses, just outside CGNAT or a 6to4 of a public one, pass."""
    assert address_problem(ipaddress.ip_address(address)) is None


def test_changing_the_sink_of_a_handshake_subscription_asks_the_new_sink(
    client: httpx.Client, rx: Receiver
) -> None:
    """A PATCH that moves a handshake subscription to another sink, or asks for the handshake
    on an active subscription, sends OPTIONS first; a refusal leaves it disabled."""
    rx.handshake_reply = {"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "60"}
    created = subscribe(client, rx, "/hs-a", config={"handshake": True})
    assert created["status"] == "active" and len(rx.handshakes) == 1
    rx.handshake_reply = {}
    moved = client.patch(f"/v1/subscriptions/{created['id']}", json={"sink": rx.sink("/hs-b")})
    assert moved.status_code == 200 and len(rx.handshakes) == 2
    assert moved.json()["status"] == "disabled" and moved.json()["rate"] is None
    assert "WebHook-Allowed-Origin missing" in moved.json()["reason"]

    plain = subscribe(client, rx, "/plain")
    asked = client.patch(f"/v1/subscriptions/{plain['id']}", json={"config": {"handshake": True}})
    assert len(rx.handshakes) == 3
    assert asked.json()["status"] == "disabled"


def test_a_granted_rate_holds_further_deliveries_until_the_next_minute(
    settings: Settings, client: httpx.Client, rx: Receiver, redis_client: redis.Redis
) -> None:
    """With WebHook-Allowed-Rate 2, only two deliveries go out this minute; the other lanes
    wait for the next minute rather than being sent or dropped, and go out then."""
    rx.handshake_reply = {"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "2"}
    sub = subscribe(client, rx, "/rated", config={"handshake": True})
    assert sub["rate"] == 2
    publish(client, *(event("im.incident.declare", imincidentid=f"INC-{i}") for i in range(4)))
    # The workers' clock starts a second into a minute, so the test runs inside one minute.
    with fake_clock_workers(settings, rx, start=time.time() // 60 * 60 + 1) as workers:
        workers.run_until(lambda: len(rx.at("/rated")) == 2)
        for _ in range(3):
            workers.run_until(lambda: True)
        assert len(rx.at("/rated")) == 2
        next_minute = (workers.clock() // 60 + 1) * 60
        assert redis_client.zcard(keys.LANES_DUE) == 2
        assert redis_client.zcount(keys.LANES_DUE, next_minute, "+inf") == 2
        workers.run_until(lambda: len(rx.at("/rated")) == 4)
    assert all(r.at >= next_minute for r in rx.at("/rated")[2:])


def test_after_the_grace_period_only_the_new_secret_signs() -> None:
    """A rotated subscription signs with both secrets until the grace ends, then the new one."""
    sub = new_subscription(Spec(sink="https://example.com/h"), "admin", datetime.now(UTC))
    old = sub.secrets[0].value
    now = time.time()
    after = rotated(sub, now, 60.0, "stamp")
    new = after.secrets[0].value
    assert after.signing_secrets(now + 59) == [new, old]
    assert after.signing_secrets(now + 61) == [new]
    assert [s.value for s in rotated(after, now + 61, 60.0, "s").secrets][1:] == [new]


def test_rotating_again_and_again_keeps_only_the_most_recent_previous_secrets() -> None:
    """However often a subscription is rotated within the grace, it signs with its current
    secret and at most MAX_PREVIOUS_SECRETS previous ones, the most recent."""
    sub = new_subscription(Spec(sink="https://example.com/h"), "admin", datetime.now(UTC))
    now = time.time()
    made = [sub.secrets[0].value]
    for n in range(MAX_PREVIOUS_SECRETS + 5):
        sub = rotated(sub, now + n, 3600.0, "stamp")
        made.append(sub.secrets[0].value)
    signing = sub.signing_secrets(now + MAX_PREVIOUS_SECRETS + 5)
    assert signing == list(reversed(made))[: MAX_PREVIOUS_SECRETS + 1]


def test_replay_skips_events_that_were_only_kept_on_the_timeline(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A repeated trigger of an open alert is stored but not sent; a replay does not send it
    either, and re-delivers the first trigger."""
    sub = subscribe(client, rx, "/alerts", types=["im.alert.*"])
    first, repeat = event("im.alert.trigger"), event("im.alert.trigger")
    publish(client, first)
    publish(client, repeat)
    workers.run_until(lambda: not workers.scheduler.pending())
    assert [r.event["id"] for r in rx.at("/alerts")] == [first["id"]]
    response = client.post(
        f"/v1/subscriptions/{sub['id']}/replay", json={"since": "2000-01-01T00:00:00Z"}
    )
    assert response.status_code == 202 and response.json()["queued"] == 1
    workers.run_until(lambda: len(rx.at("/alerts")) == 2)
    assert [r.event["id"] for r in rx.at("/alerts")] == [first["id"], first["id"]]
