"""Routing and delivery with several partitions (INCIDENTS_PARTITIONS=3 on one Redis, every
partition's keys under its own hash tag): the same guarantees as with one, end to end."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis

from incidents.delivery.address_guard import outbound_client
from incidents.delivery.lanes import (
    Delivery,
    DeliveryStore,
    lane_for,
    lane_incident,
    lane_space,
    lane_subscription,
    record_bucket,
    routed_id,
)
from incidents.routing.fanout import Router
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.redis import connect_async
from incidents.store.scripts import load_script
from incidents.subscriptions.subscription import SubscriptionCache, SubscriptionStore
from incidents.worker.jobs import WorkerContext
from tests.delivery_support import Receiver, Workers, fake_clock_workers, start_worker, subscribe
from tests.partition_support import accept_in_partitions, misplaced_keys
from tests.support import event, wait_for

T0 = 1_800_000_000.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with three partitions (tagged keys on the test's plain Redis)."""
    return settings.replace(partitions=3)


@pytest.fixture
def workers(settings: Settings, rx: Receiver) -> Iterator[Workers]:
    """The workers on a fake clock that jumps to the next due lane when nothing is due now."""
    with fake_clock_workers(settings, rx) as found:
        yield found


def test_a_lane_key_says_its_partition_subscription_and_incident() -> None:
    """A tagged lane key leads back to its partition, its subscription and its incident, as
    an untagged one does to the one partition."""
    layout = keys.Partitions(3)
    for incident in ("INC-1", "INC-2", "checkout-7"):
        space = layout.of_incident(incident)
        lane = lane_for("sub_ab", incident, "msg_1_x_ab", space)
        assert lane.startswith(f"{space.prefix}lane:")
        assert lane_space(layout, lane) is space
        assert (lane_subscription(lane), lane_incident(lane)) == ("sub_ab", incident)
    lone = lane_for("sub_ab", "", "msg_4_x_ab", layout.spaces[1])
    assert (lane_subscription(lone), lane_incident(lone)) == ("sub_ab", "")
    assert lane_space(keys.ONE, keys.lane("sub_ab", "INC-1")) is keys.ONE.spaces[0]


def test_a_record_is_kept_in_its_events_partition_and_reads_back_whole() -> None:
    """A delivery record sits in the bucket of its event's partition, and what is stored
    (without the lane its id gives) decodes to the same delivery in that layout."""
    layout = keys.Partitions(3)
    sequence = layout.sequence(layout.spaces[2], 40)  # 122
    delivery_id = routed_id(sequence, "sub_ab", "/t", "e1")
    space = layout.of_sequence(sequence)
    record = Delivery(
        delivery_id, "sub_ab", sequence, lane_for("sub_ab", "INC-3", delivery_id, space), "INC-3"
    )
    bucket = layout.spaces[2].prefix + "deliveries:1"
    assert record_bucket(sequence, layout) == bucket
    assert record.place_in(layout) == (bucket, delivery_id)
    stored = record.encoded(layout)
    assert b"lane:" not in stored
    assert Delivery.decoded(delivery_id, stored, layout) == record


def _incident_events(incidents: list[str], per_incident: int) -> list[dict[str, Any]]:
    """``per_incident`` events of each incident, interleaved across the incidents."""
    return [
        event("im.incident.note", imincidentid=incident)
        for _ in range(per_incident)
        for incident in incidents
    ]


def test_every_incident_is_delivered_in_order_across_partitions(
    client: httpx.Client,
    rx: Receiver,
    workers: Workers,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    """Incidents of all three partitions each arrive in acceptance order, retries included
    (the first event of one incident fails twice), and every key written carries the tag of
    its partition (an incident's keys: its own partition's)."""
    layout = settings.layout
    incidents = [f"INC-{n}" for n in range(1, 7)]
    assert {layout.of_incident(i).partition for i in incidents} == {0, 1, 2}
    sub = subscribe(client, rx, "/ordered")
    sent = _incident_events(incidents, 4)
    rx.scripts[sent[0]["id"]] = [(503, {}), (500, {})]
    accept_in_partitions(redis_client, layout, *sent)
    workers.run_until(lambda: len(rx.at("/ordered")) == len(sent) + 2)
    assert all(r.verified for r in rx.at("/ordered"))
    got = [r.event for r in rx.at("/ordered")]
    for incident in incidents:
        wanted = [e["id"] for e in sent if e["imincidentid"] == incident]
        if incident == "INC-1":
            wanted = [wanted[0]] * 2 + wanted
        assert [e["id"] for e in got if e["imincidentid"] == incident] == wanted
    attempts = workers.deliveries(client, sub["id"])
    assert len(attempts) == len(sent) + 2
    assert sorted(a["outcome"] for a in attempts).count("failed") == 2
    assert misplaced_keys(redis_client, layout) == []
    assert redis_client.exists("incidents:lanes:due", "incidents:deliveries:0") == 0


def test_dead_letters_of_every_partition_are_listed_redriven_and_counted(
    client: httpx.Client,
    rx: Receiver,
    workers: Workers,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    """Dead letters made in two partitions are listed together, newest first; each redrive
    delivers its event again under the same webhook-id, and /metrics sums the partitions'
    counts."""
    layout = settings.layout
    sub = subscribe(client, rx, "/dead")
    doomed = [event("im.incident.note", imincidentid=i) for i in ("INC-1", "INC-2")]
    assert layout.of_incident("INC-1") is not layout.of_incident("INC-2")
    for e in doomed:
        rx.scripts[e["id"]] = [(500, {})] * 4
    accept_in_partitions(redis_client, layout, doomed[0])
    workers.run_until(lambda: len(rx.at("/dead")) == 4)
    workers.clock.advance(5)  # type: ignore[attr-defined]  # the fake clock of the fixture
    accept_in_partitions(redis_client, layout, doomed[1])
    workers.run_until(lambda: len(rx.at("/dead")) == 8)
    dead = client.get("/v1/dead-letters").json()["dead_letters"]
    assert [d["id"] for d in dead] == [
        routed_id(d["sequence"], sub["id"], "/tests", e["id"])
        for d, e in zip(dead, doomed[::-1], strict=True)
    ]
    metrics = client.get("/metrics").text
    assert "incidents_dead_letters 2" in metrics
    assert f'incidents_deliveries_total{{subscription="{sub["id"]}",outcome="failed"}} 6' in (
        metrics
    )
    for d in dead:
        assert client.post(f"/v1/dead-letters/{d['id']}/redrive").status_code == 202
    workers.run_until(lambda: len(rx.at("/dead")) == 10)
    ids = {r.event["id"]: r.headers["webhook-id"] for r in rx.at("/dead")[-2:]}
    assert ids == {e["id"]: d["id"] for e, d in zip(doomed[::-1], dead, strict=True)}
    assert client.get("/v1/dead-letters").json()["dead_letters"] == []
    assert "incidents_dead_letters 0" in client.get("/metrics").text


def test_a_replay_queues_every_partitions_events_again_in_order(
    client: httpx.Client,
    rx: Receiver,
    workers: Workers,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    """A replay since before the events sends each incident's events again, in order, under
    new webhook-ids, from all three partitions."""
    layout = settings.layout
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    sub = subscribe(client, rx, "/replayed")
    sent = _incident_events(["INC-1", "INC-2", "INC-3"], 3)
    accept_in_partitions(redis_client, layout, *sent)
    workers.run_until(lambda: len(rx.at("/replayed")) == len(sent))
    replayed = client.post(f"/v1/subscriptions/{sub['id']}/replay", json={"since": since})
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["queued"] == len(sent)
    workers.run_until(lambda: len(rx.at("/replayed")) == 2 * len(sent))
    again = rx.at("/replayed")[len(sent) :]
    for incident in ("INC-1", "INC-2", "INC-3"):
        wanted = [e["id"] for e in sent if e["imincidentid"] == incident]
        assert [r.event["id"] for r in again if r.event["imincidentid"] == incident] == wanted
    first_ids = {r.headers["webhook-id"] for r in rx.at("/replayed")[: len(sent)]}
    assert first_ids.isdisjoint(r.headers["webhook-id"] for r in again)


def test_deleting_a_subscription_clears_its_logs_in_every_partition(
    client: httpx.Client,
    rx: Receiver,
    workers: Workers,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    """A subscription's attempt logs, kept in each partition its deliveries fell in, are all
    gone once it is deleted."""
    sub = subscribe(client, rx, "/gone")
    accept_in_partitions(
        redis_client, settings.layout, *_incident_events(["INC-1", "INC-2", "INC-3"], 1)
    )
    workers.run_until(lambda: len(rx.at("/gone")) == 3)
    logs = [space.attempts(sub["id"]) for space in settings.layout]
    assert redis_client.exists(*logs) == 3
    assert client.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
    assert redis_client.exists(*logs) == 0


def test_a_routing_job_takes_only_the_partitions_whose_lease_is_free(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """While another router holds partition 1's lease, routing queues the deliveries of
    partitions 0 and 2 and leaves partition 1's outbox entries unrouted."""
    layout = settings.layout
    assert settings.redis_url is not None
    url = settings.redis_url
    held = layout.spaces[1]
    redis_client.set(held.ROUTE_LOCK, "another-router", px=60_000)

    async def main() -> int:
        client = connect_async(url)
        try:
            subs = SubscriptionStore(client, layout)
            ledger = DeliveryStore(client, layout)
            return await Router(client, SubscriptionCache(), subs, ledger, clock=lambda: T0).route()
        finally:
            await client.aclose()

    accept_in_partitions(redis_client, layout, *_incident_events(["INC-1", "INC-2", "INC-3"], 2))
    assert asyncio.run(main()) == 4
    unrouted = redis_client.register_script(load_script("outbox"))
    left = [int(unrouted(keys=[s.OUTBOX], args=["routers", 0, 100])) for s in layout]
    assert left == [0, 2, 0]
    assert redis_client.get(held.ROUTE_LOCK) == b"another-router"


def test_claims_take_turns_between_partitions(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """With a long backlog in one partition and one lane due in each other, a claim of three
    lanes takes one from every partition, not three from the busy one."""
    layout = settings.layout
    assert settings.redis_url is not None
    url = settings.redis_url
    busy = [f"INC-{n}" for n in range(1, 40, 3)]  # all in partition 0
    quiet = ["INC-2", "INC-3"]  # partitions 1 and 2

    def queued(incident: str, seq: int) -> Delivery:
        space = layout.of_incident(incident)
        sequence = layout.sequence(space, seq)
        delivery_id = routed_id(sequence, "sub_a", "/t", f"e{sequence}")
        return Delivery(
            delivery_id,
            "sub_a",
            sequence,
            lane_for("sub_a", incident, delivery_id, space),
            incident,
        )

    async def main() -> list[int]:
        client = connect_async(url)
        try:
            ledger = DeliveryStore(client, layout)
            await ledger.enqueue([queued(i, n + 1) for n, i in enumerate(busy + quiet)], T0)
            claimed = await ledger.claim(T0, 3, 1)
            return sorted(layout.of_sequence(c.heads[0][1]).partition for c in claimed)
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [0, 1, 2]


def test_a_killed_worker_leaves_its_partitions_to_another(
    settings: Settings,
    client: httpx.Client,
    rx: Receiver,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """A worker SIGKILLed while it holds every partition's routing lease: a second worker
    takes the partitions over once the leases run out, and every event of every partition
    is delivered."""
    layout = settings.layout
    subscribe(client, rx, "/taken-over")
    first = start_worker(settings, tmp_path / "first.log", INCIDENTS_PARTITIONS="3")
    second = None
    try:
        before = _incident_events(["INC-1", "INC-2", "INC-3"], 1)
        accept_in_partitions(redis_client, layout, *before)
        wait_for(lambda: len(rx.at("/taken-over")) == 3, timeout=60)
        locks = [space.ROUTE_LOCK for space in layout]
        wait_for(lambda: redis_client.exists(*locks) == 3, timeout=30)  # it follows them all
        tokens = redis_client.mget(locks)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        sent = _incident_events(["INC-1", "INC-2", "INC-3"], 2)
        accept_in_partitions(redis_client, layout, *sent)
        second = start_worker(settings, tmp_path / "second.log", INCIDENTS_PARTITIONS="3")
        wait_for(lambda: len(rx.at("/taken-over")) >= len(before + sent), timeout=60)
        got = [r.event["id"] for r in rx.at("/taken-over")]
        assert sorted(set(got)) == sorted(e["id"] for e in before + sent)
        for incident in ("INC-1", "INC-2", "INC-3"):
            wanted = [e["id"] for e in before + sent if e["imincidentid"] == incident]
            ordered = [
                r.event["id"] for r in rx.at("/taken-over") if r.event["imincidentid"] == incident
            ]
            assert list(dict.fromkeys(ordered)) == wanted
        now_held = redis_client.mget(locks)
        assert all(t is not None for t in tokens)
        assert not set(tokens) & set(now_held), "the second worker holds every lease now"
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)


def test_routing_workers_share_the_partitions_and_take_over_when_one_stops(
    settings: Settings, client: httpx.Client, rx: Receiver, redis_client: redis.Redis
) -> None:
    """A listening dispatcher alone routes all three partitions; a second one started beside
    it gets one of them (two and one, both announced in the routers' set); when one stops,
    the other takes every partition over, and what is accepted then is delivered."""
    layout = settings.layout
    subscribe(client, rx, "/shared")
    locks = [space.ROUTE_LOCK for space in layout]
    assert settings.redis_url is not None
    url = settings.redis_url

    def holders() -> list[str]:
        tokens = [t.decode() if isinstance(t, bytes) else t for t in redis_client.mget(locks)]
        return [t.split("-", 1)[0] if t else "" for t in tokens]

    def split() -> bool:
        found = holders()
        return "" not in found and sorted(found.count(h) for h in set(found)) == [1, 2]

    def one_holds_all() -> bool:
        found = holders()
        return "" not in found and len(set(found)) == 1

    async def run(context: WorkerContext) -> int:
        lanes, listen = connect_async(url), connect_async(url)
        session = outbound_client(True, 5.0, connections=8, allow_insecure=True)
        try:
            return await context.dispatcher(lanes, session).run(60, 16, 5, listen)
        finally:
            await session.close()
            await lanes.aclose()
            await listen.aclose()

    async def until(check: Callable[[], bool]) -> None:
        await asyncio.to_thread(wait_for, check, timeout=60)

    async def main() -> tuple[list[str], int, list[str]]:
        contexts = [WorkerContext.build(settings) for _ in range(2)]
        for context in contexts:
            context.listening = True
        tasks = [asyncio.create_task(run(contexts[0]))]
        try:
            await until(one_holds_all)  # alone, the first takes every partition
            tasks.append(asyncio.create_task(run(contexts[1])))
            await until(split)  # and gives one up to the second
            shared, routers = holders(), int(redis_client.zcard(keys.ROUTERS))
            contexts[0].stopping.set()
            await tasks[0]
            accept_in_partitions(
                redis_client, layout, *_incident_events(["INC-1", "INC-2", "INC-3"], 2)
            )
            await until(one_holds_all)
            await until(lambda: len(rx.at("/shared")) >= 6)
            return shared, routers, holders()
        finally:
            for context in contexts:
                context.stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    shared, routers, after = asyncio.run(main())
    assert routers == 2
    assert after[0] not in shared or shared.count(after[0]) < 3
    assert int(redis_client.zcard(keys.ROUTERS)) == 0, "both stopped, both left the count"
    for incident in ("INC-1", "INC-2", "INC-3"):
        got = [r.event for r in rx.at("/shared") if r.event["imincidentid"] == incident]
        assert len(got) == 2


def test_a_routing_share_is_the_partitions_over_the_routers_rounded_up() -> None:
    """With P partitions and W routers a worker takes leases while under ceil(P / W), and
    over it gives up its highest partition only."""
    from incidents.delivery.routing_share import RoutingShare

    share = RoutingShare(cast(Any, None), 5)
    for routers, most in ((1, 5), (2, 3), (3, 2), (5, 1), (9, 1)):
        share.routers = routers
        share.held = set(range(most - 1))
        assert share.may_take()
        share.held = set(range(most))
        assert not share.may_take() and not share.gives_up(most - 1)
        share.held = {0, 2, 4, 1, 3} if most < 5 else set()
        if share.held:
            assert share.gives_up(4) and not share.gives_up(3)
