"""Lane leases and their fencing tokens: a worker that stalled past its lease can neither
renew nor complete a lane that another worker has taken over."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import redis

from incidents.delivery.attempt_log import AttemptEntry
from incidents.delivery.lanes import (
    DELIVERED,
    LEASE_SECONDS,
    Claimed,
    Delivery,
    DeliveryStore,
    LaneResult,
    lane_for,
    routed_id,
)
from incidents.store import keys
from incidents.store.redis import connect_async
from tests.delivery_support import stored_state

T0 = 1_800_000_000.0


def queued(sub: str, incident: str, seqs: list[int]) -> list[Delivery]:
    return [
        Delivery(
            routed_id(seq, sub, "/t", f"e{seq}"),
            sub,
            seq,
            lane_for(sub, incident, routed_id(seq, sub, "/t", f"e{seq}")),
            incident,
        )
        for seq in seqs
    ]


def finished(claimed: Claimed, record: Delivery) -> LaneResult:
    """What working the lane's first delivery successfully would write."""
    return LaneResult(
        claimed.lane,
        claimed.token,
        due=T0,
        finished=[record.id],
        records=[replace(record, state=DELIVERED, attempts=1)],
        log=[AttemptEntry(record.sub, record.id, record.seq, None, 1, T0, "delivered")],
    )


def test_a_stalled_worker_cannot_complete_or_renew_a_lane_taken_over(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Worker A's lease runs out and B claims the lane: A's completion writes nothing and its
    renewal extends nothing; B's completion goes through."""
    first, second = queued("sub_a", "INC-1", [1, 2])

    async def scenario() -> tuple[bool, int, int, bool, bool]:
        client = connect_async(redis_url)
        try:
            ledger = DeliveryStore(client)
            await ledger.enqueue([first, second], T0)
            [a] = await ledger.claim(T0, 10, 5)
            later = T0 + LEASE_SECONDS + 1  # A stalled: its lease ran out
            [b] = await ledger.claim(later, 10, 5)
            assert (a.lane, a.heads) == (b.lane, b.heads) and a.token != b.token
            a_done = await ledger.complete(finished(a, first))
            a_renewed = await ledger.renew([a], later)
            b_renewed = await ledger.renew([b], later)
            b_holds = await client.hget(keys.LANE_HOLDERS, b.lane) == b.token.encode()
            b_done = await ledger.complete(finished(b, first))
            return a_done, a_renewed, b_renewed, b_holds, b_done
        finally:
            await client.aclose()

    a_done, a_renewed, b_renewed, b_holds, b_done = asyncio.run(scenario())
    assert (a_done, a_renewed) == (False, 0)
    assert b_holds and b_renewed == 1 and b_done
    # Only B's completion was written: one log entry, the head delivered, the rest queued.
    assert redis_client.llen(keys.attempts("sub_a")) == 1
    assert stored_state(redis_client, first) == DELIVERED
    assert redis_client.zrange(first.lane, 0, -1) == [second.id.encode()]
    assert redis_client.zscore(keys.LANES_DUE, first.lane) == T0
    assert redis_client.hget(keys.LANE_HOLDERS, first.lane) is None


def test_the_holder_completes_and_the_lane_is_due_again_only_if_anything_is_left(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Completing the last delivery of a lane leaves no lane, lease or holder behind."""
    [only] = queued("sub_b", "INC-2", [7])

    async def scenario() -> bool:
        client = connect_async(redis_url)
        try:
            ledger = DeliveryStore(client)
            await ledger.enqueue([only], T0)
            [held] = await ledger.claim(T0, 10, 5)
            return await ledger.complete(finished(held, only))
        finally:
            await client.aclose()

    assert asyncio.run(scenario())
    assert not redis_client.exists(only.lane)
    assert redis_client.zscore(keys.LANES_DUE, only.lane) is None
    assert redis_client.zscore(keys.LANES_LEASED, only.lane) is None
    assert redis_client.hget(keys.LANE_HOLDERS, only.lane) is None
