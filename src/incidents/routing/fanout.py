"""Fan-out: every accepted event, read from the outbox stream, becomes one queued delivery
per subscription that wants it.

The outbox is read through a consumer group and an entry is acknowledged only after its
deliveries are written, so a router that dies mid-batch leaves its entries pending and the
next router reads them again first. Routing them twice is harmless: a delivery's id is
derived from (sequence, subscription). One router runs at a time (a lease key), which also
keeps each lane filled in gateway order. Routed entries stay in the stream, for readers that
tail recent events (``EventStore.recent``): once nothing is left to route, the stream is
trimmed to about ``INCIDENTS_STREAM_RETENTION`` entries; an unrouted entry is never trimmed.

A running worker's deliver job follows the outbox (``Router.follow``): it keeps the lease and
waits for new entries with a blocking read, so an event is routed as soon as it is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from incidents.delivery.lanes import (
    WAKE_KEEP,
    Delivery,
    DeliveryStore,
    RoutedBatch,
    lane_for,
    routed_id,
)
from incidents.delivery.stream_groups import ensure_stream_group, stream_gone
from incidents.delivery.traced import route_span
from incidents.errors import RedisFull, StoreUnavailable
from incidents.model.cloudevent import StoredEvent
from incidents.model.origin import came_from
from incidents.model.types import Extension
from incidents.store import keys
from incidents.store.events import EventReads, EventStore, stored_event
from incidents.store.keys import OUTBOX
from incidents.store.redis import FULL_REASON, FULL_RETRY_AFTER, UNAVAILABLE
from incidents.store.scripts import load_script
from incidents.subscriptions.subscription import Subscription, SubscriptionCache, SubscriptionStore
from incidents.tracing.spans import NoSpans, Spans

# The router's lease: renewed after every batch, and short, so a router killed mid-batch holds
# routing up for a few seconds at most (about as long as a dead worker holds its lanes).
LOCK_MS = 6_000
# How long a following router's read blocks waiting for new entries: also how soon it notices
# it is asked to stop. Well under LOCK_MS, as the lease is renewed after each read.
ROUTE_BLOCK_MS = 500
SEEN_KEPT = 10_000  # routed events left for the lanes at most (emptied past this)
TRIM_EVERY = 2.0  # seconds between trims of the routed entries while following the outbox
log = logging.getLogger("incidents.delivery")


def delivery_for(stored: StoredEvent, sub: Subscription, delivery_id: str, now: float) -> Delivery:
    incident = str(stored.event.get(Extension.INCIDENT_ID) or "")
    return Delivery(
        id=delivery_id,
        sub=sub.id,
        seq=stored.sequence,
        lane=lane_for(sub.id, incident, delivery_id),
        incident=incident,
        created=now,
    )


async def ensure_group(redis: aioredis.Redis) -> None:
    """The routers' group on the outbox, from its first entry on."""
    await ensure_stream_group(redis, OUTBOX, keys.ROUTER_GROUP, "0")


async def outbox_backlog(redis: aioredis.Redis, retention: int = 0) -> bool:
    """Whether the outbox holds entries not routed yet; when it holds none, it is trimmed to
    about ``retention`` entries (0: not trimmed)."""
    script = redis.register_script(load_script("outbox"))
    return bool(await script(keys=[OUTBOX], args=[keys.ROUTER_GROUP, retention]))


async def routed_through(redis: aioredis.Redis) -> int:
    """The gateway sequence up to which events are routed (their deliveries queued and their
    outbox entries acknowledged); 0 when none is. Entries the router holds unacknowledged are
    not: routing is up to the one before the first of them."""
    try:
        groups: Any = await redis.xinfo_groups(OUTBOX)
    except ResponseError:  # no outbox yet
        return 0
    found = [g for g in groups if _text(g["name"]) == keys.ROUTER_GROUP]
    if not found:
        return 0
    pending: Any = await redis.xpending(OUTBOX, keys.ROUTER_GROUP)
    held = bool(pending["pending"])
    edge = _text(pending["min"] if held else found[0]["last-delivered-id"])
    if edge == "0-0":
        return 0
    entries: Any = await redis.xrange(OUTBOX, edge, edge)
    if not entries:  # trimmed: routed long ago (unrouted entries are never trimmed)
        return int(await redis.get(keys.SEQUENCE) or 0)
    seq = int(entries[0][1][b"seq"])
    return seq - 1 if held else seq


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Router:
    """The fan-out over one Redis client: routes the outbox (``route``) or follows it
    (``follow``) under the routing lease, matching each event against the subscriptions
    (``cache``, read through ``subscriptions``) and queueing the deliveries in the lanes
    (``ledger``). Built with its collaborators by the worker (``WorkerContext.router``).
    ``retention``: about how many routed entries the stream keeps once nothing is left to
    route (0: it is not trimmed)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        cache: SubscriptionCache,
        subscriptions: SubscriptionStore,
        ledger: DeliveryStore,
        *,
        clock: Callable[[], float],
        retention: int = 0,
        spans: Spans | None = None,
    ) -> None:
        self.redis, self.cache, self.clock = redis, cache, clock
        self.subscriptions, self.ledger = subscriptions, ledger
        self.retention = retention
        self.spans = spans

    async def backlog(self) -> bool:
        """Whether the outbox holds entries not routed yet (it is not trimmed here)."""
        return await outbox_backlog(self.redis)

    async def route(self, batch: int = 500, seconds: float = 20.0) -> int:
        """Route outbox entries until none is left (or ``seconds`` pass); the number routed.
        The routed entries are kept, the stream trimmed to about ``retention`` entries once
        nothing is left to route. Returns 0 at once when another router holds the lease."""
        redis = self.redis
        token = secrets.token_hex(8)
        if not await redis.set(keys.ROUTE_LOCK, token, nx=True, px=LOCK_MS):
            return 0
        routed = 0
        try:
            await ensure_group(redis)
            router = self._batches()
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                entries = await _read(redis, "0", batch) or await _read(redis, ">", batch)
                if not entries:
                    await outbox_backlog(redis, self.retention)
                    break
                if not await router.route(entries, token):
                    break
                routed += len(entries)
        finally:
            await _unlock(redis, token)
        return routed

    async def follow(
        self,
        listen: aioredis.Redis,
        *,
        until: Callable[[], bool],
        batch: int = 500,
        seen: dict[int, StoredEvent] | None = None,
    ) -> int:
        """Hold the routing lease and route entries as they are added, waiting for them with
        a blocking read on ``listen`` (a client of its own, so the wait holds none of
        ``redis``'s connections), until ``until()`` (checked at least every ``ROUTE_BLOCK_MS``)
        or the lease is lost. Returns -1 at once when another router holds the lease, else the
        number routed. On the way out the lease is released and a hand-off entry added to the
        wake stream, so a standing-by router takes over without waiting out its retry.
        ``seen``, when given, gets the events routed (by sequence), so a dispatcher in the same
        process need not read and decode them again to send them."""
        redis = self.redis
        token = secrets.token_hex(8)
        if not await redis.set(keys.ROUTE_LOCK, token, nx=True, px=LOCK_MS):
            return -1
        routed = 0
        try:
            await ensure_group(redis)
            router = self._batches(seen)
            start, trimmed = "0", time.monotonic()  # first what a dead router left unacknowledged
            while not until():
                if start == "0":
                    entries = await _read(redis, "0", batch)
                    start = "0" if entries else ">"
                else:
                    # Bounded on our side too: a read on a dead connection fails, never hangs.
                    try:
                        async with asyncio.timeout(ROUTE_BLOCK_MS / 1000 + 2.0):
                            entries = await _read(listen, ">", batch, block=ROUTE_BLOCK_MS)
                    except ResponseError as exc:
                        if not stream_gone(exc):
                            raise
                        await ensure_group(redis)  # the outbox was deleted
                        continue
                if not await (router.route(entries, token) if entries else router.keep(token)):
                    log.warning("the routing lease ran out; another router carries on")
                    break
                routed += len(entries)
                if time.monotonic() - trimmed > TRIM_EVERY:
                    await outbox_backlog(redis, self.retention)
                    trimmed = time.monotonic()
                    # Entries a router read but did not queue (it stalled past its lease, and
                    # its queueing was refused) wait unacknowledged: read them first again.
                    start = "0"
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await _unlock(redis, token)
                await redis.xadd(
                    keys.LANES_WAKE, {"route": "free"}, maxlen=WAKE_KEEP, approximate=True
                )
        return routed

    def _batches(self, seen: dict[int, StoredEvent] | None = None) -> _Batches:
        return _Batches(
            self.redis,
            self.cache,
            self.subscriptions,
            self.ledger,
            self.clock,
            seen,
            self.spans,
        )


class _Batches:
    """Routes batches of outbox entries under a routing lease."""

    def __init__(
        self,
        redis: aioredis.Redis,
        cache: SubscriptionCache,
        subs: SubscriptionStore,
        ledger: DeliveryStore,
        clock: Callable[[], float],
        seen: dict[int, StoredEvent] | None = None,
        spans: Spans | None = None,
    ):
        self.redis, self.cache, self.clock, self.seen = redis, cache, clock, seen
        self.spans: Spans = spans if spans is not None else NoSpans()
        self.subs, self.ledger = subs, ledger
        self._renew = redis.register_script(load_script("lease"))

    async def route(self, entries: list[tuple[bytes, dict[bytes, bytes]]], token: str) -> bool:
        """Queue the entries' deliveries, acknowledge them and extend the lease, in one step
        (taken while the lease holds); False (nothing written) if the lease was lost."""
        started = time.time_ns()
        seqs = [int(fields[b"seq"]) for _, fields in entries if fields and b"seq" in fields]
        # The subscriptions' version is read with the events, after they were accepted: a
        # subscription made before an event was accepted is seen when it is routed.
        reads = EventReads(seqs)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.SUBSCRIPTIONS_VERSION)
            reads.queue(pipe)
            answers = await pipe.execute()
        version, raws = answers[0], reads.found(answers)
        self.cache.observe(version)
        # An event the planner marked as not to be fanned out (a repeat of an open alert,
        # an ack with nothing to acknowledge) is stored and on the timeline, but not sent.
        stored = [s for s in (stored_event(r) for r in raws if r) if s.plan.fanout]
        matched = await self.cache.matching(self.subs, [s.event for s in stored])
        if self.seen is not None:
            if len(self.seen) > SEEN_KEPT:  # bounded even if this worker works none of them
                self.seen.clear()
            for s, found in zip(stored, matched, strict=True):
                if found.matched or found.failed:
                    self.seen[s.sequence] = s
        now = self.clock()
        deliveries = [
            delivery_for(s, sub, routed_id(s.sequence, sub.id, s.event.source, s.event.id), now)
            for s, found in zip(stored, matched, strict=True)
            for sub in found.matched
            if not came_from(s.event, sub.id)  # the system it came from already shows it
        ]
        # A subscription whose sql filter failed on the event with an error gets a delivery
        # that only records the failure, once the dispatcher has judged the owner may see
        # the event (routing must leave no trace of an event the owner may not see).
        deliveries += [
            replace(
                delivery_for(
                    s, sub, routed_id(s.sequence, sub.id, s.event.source, s.event.id), now
                ),
                filter_error=str(failure),
            )
            for s, found in zip(stored, matched, strict=True)
            for sub, failure in found.failed
            if not came_from(s.event, sub.id)
        ]
        ids = [entry_id.decode() for entry_id, _ in entries]
        routed = RoutedBatch(token, LOCK_MS, ids)
        done = await self.ledger.enqueue(deliveries, now, routed=routed) >= 0
        if done and self.spans.enabled:
            for s, found in zip(stored, matched, strict=True):
                route_span(self.spans, s, found.matched, started)
        return done

    async def keep(self, token: str) -> bool:
        """Extend the lease (no entries came); False if it was lost."""
        return bool(await self._renew(keys=[keys.ROUTE_LOCK], args=[token, LOCK_MS]))


async def _unlock(redis: aioredis.Redis, token: str) -> None:
    await redis.register_script(load_script("unlock"))(keys=[keys.ROUTE_LOCK], args=[token])


async def _read(
    redis: aioredis.Redis, start: str, count: int, block: int | None = None
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    reply: Any = await redis.xreadgroup(
        keys.ROUTER_GROUP, keys.ROUTER_CONSUMER, {OUTBOX: start}, count=count, block=block
    )
    if not reply:
        return []
    _, entries = reply[0]
    return [(entry_id, fields or {}) for entry_id, fields in entries]


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
) -> Replay:
    """Queue again, under fresh delivery ids, the stored events accepted at or after
    ``since`` that match the subscription as it is now (and that routing would send: not
    those kept only on the timeline, such as a repeated trigger of an open alert)."""
    store = EventStore(redis)
    last = await store.last_sequence()
    first = await _first_since(store, since, last)
    if first is None:
        return Replay(0, None, None)
    nonce = secrets.token_hex(4)
    queued, now, ledger = 0, clock(), DeliveryStore(redis)
    for start in range(first, min(last, first + limit - 1) + 1, 500):
        chunk = list(range(start, min(start + 500, last + 1, first + limit)))
        found = [
            s
            for s in await store.get_many(chunk)
            if s.plan.fanout and sub.matches(s.event) and not came_from(s.event, sub.id)
        ]
        deliveries = [
            delivery_for(
                s, sub, f"{routed_id(s.sequence, sub.id, s.event.source, s.event.id)}_r{nonce}", now
            )
            for s in found
        ]
        try:
            queued += await ledger.enqueue(deliveries, now)
        except (RedisFull, StoreUnavailable) as exc:  # part of the way through
            if not queued:
                raise  # nothing was queued, as the error says
            full = isinstance(exc, RedisFull)
            raise type(exc)(
                f"{FULL_REASON if full else 'Redis cannot be reached'}; the replay queued"
                f" {queued} deliveries, of the events up to sequence {start - 1}, before it"
                " stopped: replaying again queues those again, under new webhook-ids",
                retry_after=FULL_RETRY_AFTER if full else 2,
            ) from exc
    return Replay(queued, first, min(last, first + limit - 1))


async def _first_since(store: EventStore, since: datetime, last: int) -> int | None:
    """The first sequence accepted at or after ``since`` (sequences grow with time)."""
    lo, hi = 1, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        stored = await store.get(mid)
        if stored is not None and stored.ingested_at < since:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo <= last else None
