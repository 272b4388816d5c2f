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

Each partition (``keys.Keyspace``) has its own outbox and its own routing lease: a worker
routes the partitions whose lease is free (a routing job takes every free one; a following
worker follows each it holds and stands by for the others), so a worker that dies leaves its
partitions to the others once their leases run out. An event's deliveries go to its own
partition's lanes, which one router fills, in that partition's order, hence the incident's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
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
from incidents.model.cloudevent import StoredEvent
from incidents.model.origin import came_from
from incidents.model.types import Extension
from incidents.store import keys
from incidents.store.events import EventReads, stored_event
from incidents.store.redis import UNAVAILABLE
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


def delivery_for(
    stored: StoredEvent,
    sub: Subscription,
    delivery_id: str,
    now: float,
    layout: keys.Partitions = keys.ONE,
) -> Delivery:
    incident = str(stored.event.get(Extension.INCIDENT_ID) or "")
    return Delivery(
        id=delivery_id,
        sub=sub.id,
        seq=stored.sequence,
        lane=lane_for(sub.id, incident, delivery_id, layout.of_sequence(stored.sequence)),
        incident=incident,
        created=now,
    )


async def ensure_group(redis: aioredis.Redis, space: keys.Keyspace = keys.SINGLE) -> None:
    """The routers' group on the partition's outbox, from its first entry on."""
    await ensure_stream_group(redis, space.OUTBOX, keys.ROUTER_GROUP, "0")


async def outbox_backlog(
    redis: aioredis.Redis, retention: int = 0, space: keys.Keyspace = keys.SINGLE
) -> bool:
    """Whether the partition's outbox holds entries not routed yet; when it holds none, it is
    trimmed to about ``retention`` entries (0: not trimmed)."""
    script = redis.register_script(load_script("outbox"))
    return bool(await script(keys=[space.OUTBOX], args=[keys.ROUTER_GROUP, retention]))


async def routed_through(
    redis: aioredis.Redis, space: keys.Keyspace = keys.SINGLE, layout: keys.Partitions = keys.ONE
) -> int:
    """The gateway sequence up to which the events of partition ``space`` are routed (their
    deliveries queued and their outbox entries acknowledged); 0 when none is. Entries the
    router holds unacknowledged are not: routing is up to the one before the first of them.
    Sequences grow within a partition, not across: compare it with that partition's."""
    outbox = space.OUTBOX
    try:
        groups: Any = await redis.xinfo_groups(outbox)
    except ResponseError:  # no outbox yet
        return 0
    found = [g for g in groups if _text(g["name"]) == keys.ROUTER_GROUP]
    if not found:
        return 0
    pending: Any = await redis.xpending(outbox, keys.ROUTER_GROUP)
    held = bool(pending["pending"])
    edge = _text(pending["min"] if held else found[0]["last-delivered-id"])
    if edge == "0-0":
        return 0
    entries: Any = await redis.xrange(outbox, edge, edge)
    if not entries:  # trimmed: routed long ago (unrouted entries are never trimmed)
        return layout.sequence(space, int(await redis.get(space.SEQUENCE) or 0))
    seq = int(entries[0][1][b"seq"])
    return seq - 1 if held else seq


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Router:
    """The fan-out over one Redis client: routes the outbox (``route``) or follows it
    (``follow``) under the routing lease, matching each event against the subscriptions
    (``cache``, read through ``subscriptions``) and queueing the deliveries in the lanes
    (``ledger``, whose layout says the partitions). Built with its collaborators by the worker
    (``WorkerContext.router``). ``retention``: about how many routed entries a partition's
    stream keeps once nothing is left to route (0: it is not trimmed)."""

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
        self.layout = ledger.layout
        self.retention = retention
        self.spans = spans

    @property
    def partitions(self) -> int:
        """How many outboxes there are to route (``follow`` takes one of them)."""
        return len(self.layout)

    async def backlog(self) -> bool:
        """Whether any partition's outbox holds entries not routed yet (not trimmed here)."""
        for space in self.layout:
            if await outbox_backlog(self.redis, 0, space):
                return True
        return False

    async def route(self, batch: int = 500, seconds: float = 20.0) -> int:
        """Route the outbox entries of every partition whose routing lease is free until none
        is left (or ``seconds`` pass); the number routed. The routed entries are kept, a
        stream trimmed to about ``retention`` entries once nothing is left in it to route.
        Returns 0 at once when other routers hold every lease."""
        stop = time.monotonic() + seconds
        routed = 0
        for space in self.layout:
            routed += await self._route(space, batch, stop)
        return routed

    async def _route(self, space: keys.Keyspace, batch: int, stop: float) -> int:
        redis = self.redis
        token = secrets.token_hex(8)
        if not await redis.set(space.ROUTE_LOCK, token, nx=True, px=LOCK_MS):
            return 0
        routed = 0
        try:
            await ensure_group(redis, space)
            router = self._batches(space)
            while time.monotonic() < stop:
                entries = await _read(redis, space, "0", batch) or await _read(
                    redis, space, ">", batch
                )
                if not entries:
                    await outbox_backlog(redis, self.retention, space)
                    break
                if not await router.route(entries, token):
                    break
                routed += len(entries)
        finally:
            await _unlock(redis, space, token)
        return routed

    async def follow(
        self,
        listen: aioredis.Redis,
        *,
        until: Callable[[], bool],
        batch: int = 500,
        seen: dict[int, StoredEvent] | None = None,
        partition: int = 0,
        holder: str = "",
    ) -> int:
        """Hold the routing lease of ``partition`` and route its entries as they are added,
        waiting for them with a blocking read on ``listen`` (a client of its own, so the wait
        holds none of ``redis``'s connections), until ``until()`` (checked at least every
        ``ROUTE_BLOCK_MS``) or the lease is lost. Returns -1 at once when another router holds
        the lease, else the number routed. On the way out the lease is released and a hand-off
        entry added to the wake stream, so a standing-by router takes over without waiting out
        its retry. ``seen``, when given, gets the events routed (by sequence), so a dispatcher
        in the same process need not read and decode them again to send them. ``holder``
        begins the lease's token (which worker holds it)."""
        redis = self.redis
        space = self.layout.spaces[partition]
        token = holder + secrets.token_hex(8)
        if not await redis.set(space.ROUTE_LOCK, token, nx=True, px=LOCK_MS):
            return -1
        routed = 0
        try:
            await ensure_group(redis, space)
            router = self._batches(space, seen)
            start, trimmed = "0", time.monotonic()  # first what a dead router left unacknowledged
            while not until():
                if start == "0":
                    entries = await _read(redis, space, "0", batch)
                    start = "0" if entries else ">"
                else:
                    # Bounded on our side too: a read on a dead connection fails, never hangs.
                    try:
                        async with asyncio.timeout(ROUTE_BLOCK_MS / 1000 + 2.0):
                            entries = await _read(listen, space, ">", batch, block=ROUTE_BLOCK_MS)
                    except ResponseError as exc:
                        if not stream_gone(exc):
                            raise
                        await ensure_group(redis, space)  # the outbox was deleted
                        continue
                if not await (router.route(entries, token) if entries else router.keep(token)):
                    log.warning("the routing lease ran out; another router carries on")
                    break
                routed += len(entries)
                if time.monotonic() - trimmed > TRIM_EVERY:
                    await outbox_backlog(redis, self.retention, space)
                    trimmed = time.monotonic()
                    # Entries a router read but did not queue (it stalled past its lease, and
                    # its queueing was refused) wait unacknowledged: read them first again.
                    start = "0"
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await _unlock(redis, space, token)
                await redis.xadd(
                    keys.LANES_WAKE, {"route": "free"}, maxlen=WAKE_KEEP, approximate=True
                )
        return routed

    def _batches(
        self, space: keys.Keyspace, seen: dict[int, StoredEvent] | None = None
    ) -> _Batches:
        return _Batches(
            self.redis,
            space,
            self.cache,
            self.subscriptions,
            self.ledger,
            self.clock,
            seen,
            self.spans,
        )


class _Batches:
    """Routes batches of one partition's outbox entries under its routing lease."""

    def __init__(
        self,
        redis: aioredis.Redis,
        space: keys.Keyspace,
        cache: SubscriptionCache,
        subs: SubscriptionStore,
        ledger: DeliveryStore,
        clock: Callable[[], float],
        seen: dict[int, StoredEvent] | None = None,
        spans: Spans | None = None,
    ):
        self.redis, self.space, self.cache, self.clock, self.seen = redis, space, cache, clock, seen
        self.spans: Spans = spans if spans is not None else NoSpans()
        self.subs, self.ledger = subs, ledger
        self.layout = ledger.layout
        self._renew = redis.register_script(load_script("lease"))

    async def route(self, entries: list[tuple[bytes, dict[bytes, bytes]]], token: str) -> bool:
        """Queue the entries' deliveries, acknowledge them and extend the lease, in one step
        (taken while the lease holds); False (nothing written) if the lease was lost."""
        started = time.time_ns()
        seqs = [int(fields[b"seq"]) for _, fields in entries if fields and b"seq" in fields]
        # The subscriptions' version is read with the events, after they were accepted: a
        # subscription made before an event was accepted is seen when it is routed.
        reads = EventReads(seqs, self.layout)
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
        now, layout = self.clock(), self.layout
        deliveries = [
            delivery_for(
                s, sub, routed_id(s.sequence, sub.id, s.event.source, s.event.id), now, layout
            )
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
                    s, sub, routed_id(s.sequence, sub.id, s.event.source, s.event.id), now, layout
                ),
                filter_error=str(failure),
            )
            for s, found in zip(stored, matched, strict=True)
            for sub, failure in found.failed
            if not came_from(s.event, sub.id)
        ]
        ids = [entry_id.decode() for entry_id, _ in entries]
        routed = RoutedBatch(token, LOCK_MS, ids, self.space.partition)
        done = await self.ledger.enqueue(deliveries, now, routed=routed) >= 0
        if done and self.spans.enabled:
            for s, found in zip(stored, matched, strict=True):
                route_span(self.spans, s, found.matched, started)
        return done

    async def keep(self, token: str) -> bool:
        """Extend the lease (no entries came); False if it was lost."""
        return bool(await self._renew(keys=[self.space.ROUTE_LOCK], args=[token, LOCK_MS]))


async def _unlock(redis: aioredis.Redis, space: keys.Keyspace, token: str) -> None:
    await redis.register_script(load_script("unlock"))(keys=[space.ROUTE_LOCK], args=[token])


async def _read(
    redis: aioredis.Redis,
    space: keys.Keyspace,
    start: str,
    count: int,
    block: int | None = None,
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    reply: Any = await redis.xreadgroup(
        keys.ROUTER_GROUP, keys.ROUTER_CONSUMER, {space.OUTBOX: start}, count=count, block=block
    )
    if not reply:
        return []
    _, entries = reply[0]
    return [(entry_id, fields or {}) for entry_id, fields in entries]
