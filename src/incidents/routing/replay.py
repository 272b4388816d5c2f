"""Replay: the stored events accepted since a time, queued again for one subscription under
fresh delivery ids (``POST /v1/subscriptions/{id}/replay``), from every partition."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis

from incidents.delivery.lanes import DeliveryStore, routed_id
from incidents.errors import RedisFull, StoreUnavailable
from incidents.model.origin import came_from
from incidents.routing.fanout import delivery_for
from incidents.store import keys
from incidents.store.events import read_events_async, stored_event
from incidents.store.redis import FULL_REASON, FULL_RETRY_AFTER, guarded
from incidents.subscriptions.subscription import Subscription


@dataclass(frozen=True)
class Replay:
    queued: int
    first_sequence: int | None
    last_sequence: int | None


async def replay(
    redis: aioredis.Redis,
    sub: Subscription,
    since: datetime,
    limit: int = 100_000,
    *,
    clock: Callable[[], float],
    layout: keys.Partitions = keys.ONE,
) -> Replay:
    """Queue again, under fresh delivery ids, the stored events accepted at or after
    ``since`` that match the subscription as it is now (and that routing would send: not
    those kept only on the timeline, such as a repeated trigger of an open alert). Each
    partition's events from the first accepted since then, up to ``limit`` sequences in all
    (shared between the partitions); the first and last sequence queued from."""
    nonce = secrets.token_hex(4)
    queued, now, ledger = 0, clock(), DeliveryStore(redis, layout)
    firsts: list[int] = []
    lasts: list[int] = []
    share = max(1, limit // len(layout))
    for space in layout:
        async with guarded("reading the sequence"):
            last = int(await redis.get(space.SEQUENCE) or 0)  # the partition's counter
        first = await _first_since(redis, layout, space, since, last)
        if first is None:
            continue
        end = min(last, first + share - 1)
        firsts.append(layout.sequence(space, first))
        lasts.append(layout.sequence(space, end))
        for start in range(first, end + 1, 500):
            chunk = [layout.sequence(space, c) for c in range(start, min(start + 500, end + 1))]
            async with guarded("reading events"):
                raws = await read_events_async(redis, chunk, layout)
            found = [
                s
                for s in (stored_event(r) for r in raws if r)
                if s.plan.fanout and sub.matches(s.event) and not came_from(s.event, sub.id)
            ]
            deliveries = [
                delivery_for(
                    s,
                    sub,
                    f"{routed_id(s.sequence, sub.id, s.event.source, s.event.id)}_r{nonce}",
                    now,
                    layout,
                )
                for s in found
            ]
            try:
                queued += await ledger.enqueue(deliveries, now)
            except (RedisFull, StoreUnavailable) as exc:  # part of the way through
                if not queued:
                    raise  # nothing was queued, as the error says
                full = isinstance(exc, RedisFull)
                before = layout.sequence(space, start - 1)
                raise type(exc)(
                    f"{FULL_REASON if full else 'Redis cannot be reached'}; the replay queued"
                    f" {queued} deliveries, of the events up to sequence {before}, before it"
                    " stopped: replaying again queues those again, under new webhook-ids",
                    retry_after=FULL_RETRY_AFTER if full else 2,
                ) from exc
    if not firsts:
        return Replay(0, None, None)
    return Replay(queued, min(firsts), max(lasts))


async def _first_since(
    redis: aioredis.Redis,
    layout: keys.Partitions,
    space: keys.Keyspace,
    since: datetime,
    last: int,
) -> int | None:
    """The first of the partition's counters (up to ``last``) whose event was accepted at or
    after ``since`` (a partition's sequences grow with time)."""
    lo, hi = 1, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        async with guarded("reading an event"):
            (raw,) = await read_events_async(redis, [layout.sequence(space, mid)], layout)
        stored = stored_event(raw) if raw else None
        if stored is not None and stored.ingested_at < since:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo <= last else None
