"""Delivery under hostile sinks and broken state: every failure is an attempt with an outcome,
Retry-After holds the whole subscription, one sink cannot take every slot, a dead router does
not hold routing up, and nobody learns of an event it may not see."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis

from incidents.delivery.throttle import Throttle
from incidents.routing import fanout
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.redis import connect_async
from tests.delivery_support import (
    Receiver,
    Workers,
    fake_clock_workers,
    publish,
    start_worker,
    subscribe,
)
from tests.support import as_token, create_principal, event, wait_for

CE_JSON = {"Content-Type": "application/cloudevents+json"}


@pytest.fixture
def clocked(settings: Settings, rx: Receiver) -> Iterator[Workers]:
    """Workers on a fake clock that jumps to the next due lane when nothing is due now: the
    schedule and Retry-After are kept to exactly, without waiting out real time."""
    with fake_clock_workers(settings, rx) as found:
        yield found


def outcomes(workers: Workers, client: httpx.Client, sub_id: str) -> list[str]:
    return [e["outcome"] for e in workers.deliveries(client, sub_id)]


def test_a_retry_after_that_is_not_a_number_is_a_failed_attempt_not_a_stuck_lane(
    client: httpx.Client, rx: Receiver, clocked: Workers
) -> None:
    """A 429 with `Retry-After: ²` (a digit to str.isdigit, not to float) is logged as a failed
    attempt and retried on schedule; the incident's next event follows it."""
    sub = subscribe(client, rx, "/odd")
    # The receiver writes header values as latin-1: these two characters go out as the UTF-8
    # bytes of "²", which is what the gateway's HTTP client reads back.
    rx.scripts["/odd"] = [(429, {"Retry-After": "²".encode().decode("latin-1")})]
    first = event("im.incident.declare", imincidentid="INC-7")
    second = event("im.incident.note", imincidentid="INC-7")
    publish(client, first, second)
    clocked.run_until(lambda: len(rx.at("/odd")) == 3)
    assert [r.event["id"] for r in rx.at("/odd")] == [first["id"], first["id"], second["id"]]
    log = clocked.deliveries(client, sub["id"])
    assert [(e["outcome"], e["status_code"]) for e in log] == [
        ("failed", 429),
        ("delivered", 200),
        ("delivered", 200),
    ]
    assert log[0]["next_attempt"] is not None


def test_a_request_that_cannot_be_sent_is_logged_retried_and_dead_lettered(
    client: httpx.Client, rx: Receiver, clocked: Workers, redis_client: redis.Redis
) -> None:
    """A stored header value that the HTTP client refuses to send (a control character, from
    before such values were refused at registration) makes failed attempts with the reason, then
    a dead letter; once mended, the lane goes on with the incident's next event."""
    sub = subscribe(client, rx, "/broken")
    key = keys.subscription(sub["id"])
    spec = orjson.loads(redis_client.hget(key, "spec") or b"{}")
    spec["protocolsettings"]["headers"] = {"X-Team": "ops\x01"}
    redis_client.hset(key, "spec", orjson.dumps(spec))
    redis_client.incr(keys.SUBSCRIPTIONS_VERSION)
    publish(client, event("im.incident.declare", imincidentid="INC-8"))
    clocked.run_until(lambda: "dead" in outcomes(clocked, client, sub["id"]), timeout=20)
    log = clocked.deliveries(client, sub["id"])
    assert [e["outcome"] for e in log] == ["failed", "failed", "failed", "dead"]
    assert all("control character" in e["error"] for e in log)
    assert rx.at("/broken") == []
    dead = client.get("/v1/dead-letters").json()["dead_letters"]
    assert [d["subscription"] for d in dead] == [sub["id"]]

    mended = client.patch(
        f"/v1/subscriptions/{sub['id']}", json={"protocolsettings": {"headers": {}}}
    )
    assert mended.status_code == 200, mended.text
    note = event("im.incident.note", imincidentid="INC-8")
    publish(client, note)
    clocked.run_until(lambda: len(rx.at("/broken")) == 1)
    assert rx.at("/broken")[0].event["id"] == note["id"]


def test_retry_after_holds_every_lane_of_the_subscription(
    client: httpx.Client, rx: Receiver, clocked: Workers
) -> None:
    """After a 429 with Retry-After: 2 on one incident, nothing goes to that sink for 2 s, not
    even another incident's event; another subscription is not held."""
    subscribe(client, rx, "/busy")
    subscribe(client, rx, "/calm")
    rx.scripts["/busy"] = [(429, {"Retry-After": "2"})]
    publish(client, event("im.incident.declare", imincidentid="INC-1"))
    clocked.run_until(lambda: len(rx.at("/busy")) == 1 and len(rx.at("/calm")) == 1)
    refused_at = rx.at("/busy")[0].at
    other = event("im.incident.declare", imincidentid="INC-2")
    publish(client, other)
    clocked.run_until(lambda: len(rx.at("/busy")) == 3 and len(rx.at("/calm")) == 2, timeout=15)
    calm_other = [r for r in rx.at("/calm") if r.event["id"] == other["id"]]
    assert calm_other and calm_other[0].at - refused_at < 2
    later = rx.at("/busy")[1:]
    assert all(r.at - refused_at >= 2.0 for r in later), [r.at - refused_at for r in later]


def test_retry_after_holds_on_workers_whose_clock_is_behind_the_servers(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A pause asked for by a sink holds for its whole length by the workers' clock even when
    that clock is a minute behind the Redis server's: another incident's event waits too."""
    with fake_clock_workers(settings, rx, start=time.time() - 60) as behind:
        subscribe(client, rx, "/behind")
        rx.scripts["/behind"] = [(429, {"Retry-After": "2"})]
        publish(client, event("im.incident.declare", imincidentid="INC-1"))
        behind.run_until(lambda: len(rx.at("/behind")) == 1)
        refused_at = rx.at("/behind")[0].at
        publish(client, event("im.incident.declare", imincidentid="INC-2"))
        behind.run_until(lambda: len(rx.at("/behind")) == 3, timeout=15)
    later = rx.at("/behind")[1:]
    assert all(r.at - refused_at >= 2.0 for r in later), [r.at - refused_at for r in later]


def test_a_long_retry_after_is_capped_by_the_setting(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A sink asking for a day is waited out for INCIDENTS_MAX_RETRY_AFTER (3 s here)."""
    with fake_clock_workers(settings.replace(max_retry_after=3.0), rx) as capped:
        subscribe(client, rx, "/day")
        rx.scripts["/day"] = [(503, {"Retry-After": "86400"})]
        publish(client, event("im.incident.declare"))
        capped.run_until(lambda: len(rx.at("/day")) == 2, timeout=15)
    first, second = rx.at("/day")
    assert 3.0 <= second.at - first.at < 8


def test_a_router_killed_holding_the_routing_lease_holds_routing_up_for_seconds_only(
    client: httpx.Client, rx: Receiver, workers: Workers, redis_client: redis.Redis
) -> None:
    """The routing lease a killed router leaves behind runs out in a few seconds (as a dead
    worker's lanes do), not 30: the next event is routed and delivered soon after."""
    subscribe(client, rx, "/routed")
    redis_client.set(keys.ROUTE_LOCK, "a-router-that-was-killed", px=fanout.LOCK_MS)
    publish(client, event("im.incident.declare"))
    started = time.monotonic()
    workers.run_until(lambda: len(rx.at("/routed")) == 1, timeout=12)
    assert time.monotonic() - started < 10


def test_a_subscriber_never_learns_of_another_tenants_events(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A catch-all subscription of tenant A gets tenant A's events; tenant B's restricted and
    internal events leave no entry in A's delivery log (no id, type or incident of B's)."""
    a = create_principal(client, name="a-sub", roles=["subscriber"], tenant="tenant-a")
    with as_token(client, a["token"]) as owner:
        sub = subscribe(owner, rx, "/tenant-a")
    b = create_principal(client, name="b-prod", tenant="tenant-b", clearance="restricted")
    mine = create_principal(client, name="a-prod", tenant="tenant-a")
    hidden = [
        event("im.incident.declare", imvisibility="restricted", imdataclass="restricted"),
        event("im.incident.declare", imvisibility="internal"),
    ]
    with as_token(client, b["token"]) as producer:
        for ev in hidden:
            r = producer.post("/v1/events", content=json.dumps(ev), headers=CE_JSON)
            assert r.status_code == 202, r.text
    own = event("im.incident.declare", imvisibility="internal")
    with as_token(client, mine["token"]) as producer:
        r = producer.post("/v1/events", content=json.dumps(own), headers=CE_JSON)
        assert r.status_code == 202, r.text
    workers.run_until(lambda: len(rx.at("/tenant-a")) == 1)
    workers.run_until(lambda: not workers.scheduler.pending())
    with as_token(client, a["token"]) as owner:
        log = workers.deliveries(owner, sub["id"])
    text = json.dumps(log)
    assert [e["event_id"] for e in log] == [own["id"]]
    assert "tenant-b" not in text and all(ev["id"] not in text for ev in hidden)
    assert rx.at("/tenant-a")[0].event["id"] == own["id"]


def test_after_a_granted_handshake_every_delivery_names_the_origin(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Once the sink granted the OPTIONS handshake, each delivery carries the same
    WebHook-Request-Origin the handshake asked with (CloudEvents webhook spec 4.1.2); a
    subscription without a handshake sends none."""
    rx.handshake_reply = {"WebHook-Allowed-Origin": "*"}
    subscribe(client, rx, "/granted", config={"handshake": True})
    subscribe(client, rx, "/plain")
    publish(client, event("im.incident.declare"), event("im.incident.declare"))
    workers.run_until(lambda: len(rx.at("/granted")) == 2 and len(rx.at("/plain")) == 2)
    asked = rx.handshakes[0]["webhook-request-origin"]
    assert [r.headers.get("webhook-request-origin") for r in rx.at("/granted")] == [asked] * 2
    assert [r.headers.get("webhook-request-origin") for r in rx.at("/plain")] == [None, None]
    assert all(r.verified for r in rx.at("/granted"))


@pytest.fixture
def worker_process(settings: Settings) -> Iterator[None]:
    """One real `incidents worker` process (delivery timeout 10 s), as in production."""
    process = start_worker(settings)
    try:
        yield
    finally:
        # Killed: a warm shutdown would wait out deliveries still hanging (a test's sink that
        # never answers), and the test is over; its shutdown is tested elsewhere.
        process.kill()
        process.wait(30)


@pytest.mark.slow
def test_a_hanging_sink_does_not_hold_up_a_healthy_one(
    settings: Settings, client: httpx.Client, rx: Receiver, worker_process: None
) -> None:
    """300 incidents waiting on a sink that never answers take at most the per-sink share of
    one worker's slots: a healthy sink's events still arrive in well under a second."""
    subscribe(client, rx, "/hang", source="/hanging")
    subscribe(client, rx, "/ok", source="/healthy")
    rx.delays["/hang"] = 60.0
    for start in range(0, 300, 100):
        publish(
            client,
            *(
                event("im.incident.declare", source="/hanging", imincidentid=f"INC-H{i}")
                for i in range(start, start + 100)
            ),
        )
    wait_for(lambda: len(rx.at("/hang")) >= 20, 20)
    hanging_since = time.monotonic()
    sent: dict[str, float] = {}
    for i in range(20):
        ev = event("im.incident.declare", source="/healthy", imincidentid=f"INC-OK{i}")
        sent[ev["id"]] = time.time()
        publish(client, ev)
        time.sleep(0.1)
    wait_for(lambda: len(rx.at("/ok")) >= 20, 60)
    held = len(rx.at("/hang"))
    within_one_timeout = time.monotonic() - hanging_since < 9  # before any hanging send gave up
    latencies = sorted(r.at - sent[r.event["id"]] for r in rx.at("/ok"))
    p50 = statistics.median(latencies)
    print(f"healthy sink beside a hanging one: p50 {p50 * 1000:.0f} ms, max {latencies[-1]:.2f} s")
    assert p50 < 1.0
    if within_one_timeout:
        assert held <= settings.sink_concurrency  # the cap held


def test_a_pause_is_not_taken_back_by_a_read_from_before_it(redis_url: str) -> None:
    """A Retry-After pause this worker stored holds even when another lane's read of the pause
    key, made before the pause was stored, arrives afterwards (empty or older)."""

    async def run() -> tuple[float, float, float]:
        connection = connect_async(redis_url)
        try:
            throttle = Throttle(connection, clock=lambda: 1_000.0)
            await throttle.pause("sub_x", 1_030.0)
            throttle.note("sub_x", None)  # read before the pause was stored
            after_empty = throttle.paused_until("sub_x")
            throttle.note("sub_x", b"1010.0")  # an older pause, read before this one
            after_older = throttle.paused_until("sub_x")
            throttle.note("sub_x", b"1050.0")  # another worker's longer pause
            return after_empty, after_older, throttle.paused_until("sub_x")
        finally:
            await connection.aclose()

    assert asyncio.run(run()) == (1_030.0, 1_030.0, 1_050.0)
