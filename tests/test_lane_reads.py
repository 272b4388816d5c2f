"""A lane's holder going on with its next deliveries gets what working them needs from the
step that completed the previous ones, and a worker's router leaves the events it routed for
its lanes: no extra round trip or decoding per delivery."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import orjson
import redis

from incidents.connectors.channel_base import ChannelState
from incidents.delivery.attempt_log import AttemptEntry
from incidents.delivery.lanes import (
    DELIVERED,
    Delivery,
    DeliveryStore,
    LaneResult,
    lane_for,
    routed_id,
)
from incidents.model.cloudevent import StoredEvent
from incidents.routing.fanout import SEEN_KEPT
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.redis import connect_async
from incidents.worker.jobs import WorkerContext
from tests.delivery_support import Receiver, publish, stored_state, subscribe
from tests.support import event

T0 = 1_800_000_000.0


def queued(sub: str, incident: str, seqs: list[int]) -> list[Delivery]:
    ids = [routed_id(seq, sub, "/t", f"e{seq}") for seq in seqs]
    return [
        Delivery(i, sub, seq, lane_for(sub, incident, i), incident, created=T0)
        for i, seq in zip(ids, seqs, strict=True)
    ]


def test_completing_a_held_lane_returns_its_next_records_version_pause_and_state(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Completing with more to do returns the next heads with their records, the
    subscriptions' and the silences' versions, the subscription's pause and the incident's
    channel state."""
    first, second, third = queued("sub_r", "INC-9", [1, 2, 3])
    redis_client.set(keys.SUBSCRIPTIONS_VERSION, "41")
    redis_client.set(keys.SILENCES_VERSION, "7")
    redis_client.set(keys.paused("sub_r"), repr(T0 + 5))
    state = ChannelState(external_id="EXT-1")
    redis_client.hset(keys.channel_state("sub_r"), "INC-9", state.encoded())

    async def scenario() -> object:
        client = connect_async(redis_url)
        try:
            ledger = DeliveryStore(client)
            await ledger.enqueue([first, second, third], T0)
            [held] = await ledger.claim(T0, 10, 1)
            done = LaneResult(
                held.lane,
                held.token,
                due=T0,
                finished=[first.id],
                records=[replace(first, state=DELIVERED, attempts=1)],
                log=[AttemptEntry("sub_r", first.id, 1, "INC-9", 1, T0, "delivered")],
            )
            return await ledger.complete_and_continue(done, 2, T0)
        finally:
            await client.aclose()

    found = asyncio.run(scenario())
    assert found is not None
    assert getattr(found, "heads", None) == ((second.id, 2), (third.id, 3))
    assert getattr(found, "version", None) == b"41"
    assert getattr(found, "silences", None) == b"7"
    assert getattr(found, "paused", None) == repr(T0 + 5).encode()
    assert ChannelState.decode(getattr(found, "state", b"")).external_id == "EXT-1"
    rows = getattr(found, "rows", ())
    assert [
        Delivery.decoded(i, r) for i, r in zip((second.id, third.id), rows, strict=True) if r
    ] == [
        second,
        third,
    ]
    # The completion itself was written as before.
    assert stored_state(redis_client, first) == DELIVERED
    assert redis_client.llen(keys.attempts("sub_r")) == 1


def route_one(settings: Settings, seen: dict[int, StoredEvent]) -> None:
    """Follow the outbox until one event is left in ``seen`` (it then holds only that one)."""

    async def scenario() -> None:
        assert settings.redis_url is not None
        context = WorkerContext.build(settings)
        connection, listen = connect_async(settings.redis_url), connect_async(settings.redis_url)
        try:
            async with asyncio.timeout(10):
                await context.router(connection).follow(
                    listen, until=lambda: len(seen) == 1, seen=seen
                )
        finally:
            await connection.aclose()
            await listen.aclose()

    asyncio.run(scenario())


def test_the_router_leaves_the_events_it_routed_for_the_lanes(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """An event routed to a subscription is handed to the worker's lanes already decoded."""
    subscribe(client, rx, "/routed")
    declare = event("im.incident.declare", imincidentid="INC-routed")
    publish(client, declare)
    seen: dict[int, StoredEvent] = {}
    route_one(settings, seen)
    assert [s.event.id for s in seen.values()] == [declare["id"]]


def test_the_events_left_for_the_lanes_are_bounded(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """Routed events left for the lanes are emptied past SEEN_KEPT, so a worker that routes
    but works no lane does not keep every event it routed."""
    subscribe(client, rx, "/bounded")
    declare = event("im.incident.declare", imincidentid="INC-bounded")
    publish(client, declare)
    [old] = [StoredEvent.from_dict(orjson.loads(orjson.dumps(_stored(declare))))]
    seen = {-n: old for n in range(SEEN_KEPT + 1)}
    route_one(settings, seen)
    assert [s.event.id for s in seen.values()] == [declare["id"]]


def _stored(raw: dict[str, object]) -> dict[str, object]:
    return {"event": raw, "sequence": 0, "ingested_at": "2026-01-01T00:00:00+00:00"}
