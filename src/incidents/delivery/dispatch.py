"""Working lanes: every leased lane's deliveries are judged by policy, handed to their
subscription's channel and sent in order; outcomes are recorded, and failures wait for their
retry while other lanes go on.

One ``Dispatcher.run`` (one RQ job) keeps up to ``concurrency`` lanes in flight over one
transport (one keep-alive HTTP client), claiming more as lanes finish, until none is due or
its time is up. Wall-clock time comes from the injected ``clock``.

A dispatcher builds none of its collaborators: the worker context (``worker/jobs.py``'s
``WorkerContext.dispatcher``) builds them over the job's Redis client and hands them over, the
stores and caches in one ``LaneParts``, and the fan-out as a ``Router``
(``routing/fanout.py``; the dispatcher knows it as an ``OutboxRouter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from incidents.connectors.channel_base import (
    Channel,
    ChannelState,
    Message,
    Outcome,
    OutcomeKind,
    Transport,
)
from incidents.delivery.channel_state import ChannelStateStore
from incidents.delivery.channels import mask_for
from incidents.delivery.lanes import (
    WAKE_KEEP,
    Claimed,
    Continued,
    Delivery,
    DeliveryStore,
    LaneResult,
    lane_incident,
    lane_space,
    lane_subscription,
    record_bucket,
)
from incidents.delivery.outcomes import Outcomes, utc_time
from incidents.delivery.routing_share import ANNOUNCE_EVERY, RoutingShare
from incidents.delivery.stream_groups import ensure_stream_group, stream_gone
from incidents.delivery.throttle import Throttle
from incidents.delivery.traced import traced_exchange
from incidents.errors import StoreUnavailable
from incidents.model.cloudevent import StoredEvent
from incidents.policy.outbound import Verdict
from incidents.settings import Settings
from incidents.silences.store import SilenceCache, SilenceStore
from incidents.store import keys
from incidents.store.events import EventReads, read_events_async, stored_event
from incidents.store.redis import UNAVAILABLE
from incidents.store.secret_box import SecretUnreadable
from incidents.subscriptions.owner_views import IncidentViews, OwnerViews
from incidents.subscriptions.spec import SubscriptionStatus
from incidents.subscriptions.subscription import Subscription, SubscriptionCache, SubscriptionStore
from incidents.tracing.spans import NoSpans, Spans

log = logging.getLogger("incidents.delivery")
RENEW_EVERY = 2.0
POLL_SECONDS = 0.01  # how often a job run without a listening client looks for due lanes
IDLE_CHECK = 0.25  # a listening dispatcher notices a stop request at least this often
WAKE_BLOCK_MS = 500  # how long one blocking read of the wake stream waits
WAKE_CONSUMER_IDLE_MS = 600_000  # a wake consumer idle this long belongs to a job that is gone
STANDBY_SECONDS = 1.0  # how often a router standing by tries the routing lease
BACKSTOP_SECONDS = 1.0  # a listening dispatcher claims at least this often, woken or not
LANE_SECONDS = 2.0  # a lane hands its slot back after working this long (or at a failure)
EVENT_CACHE = 10_000  # events kept for lanes of other subscriptions (emptied past this)


class OutboxRouter(Protocol):
    """The fan-out a dispatcher routes with (``routing.fanout.Router``): it fills the lanes
    this module works, following one outbox per partition."""

    @property
    def partitions(self) -> int: ...

    async def backlog(self) -> bool: ...

    async def route(self, batch: int = 500, seconds: float = 20.0) -> int: ...

    async def follow(
        self,
        listen: aioredis.Redis,
        *,
        until: Callable[[], bool],
        batch: int = 500,
        seen: dict[int, StoredEvent] | None = None,
        partition: int = 0,
        holder: str = "",
    ) -> int: ...


@dataclass(frozen=True)
class LaneParts:
    """What a dispatcher works lanes with, built over one Redis client by the worker context:
    the lanes (``ledger``), the subscriptions (read through ``cache``), the channel state kept
    per incident, the sinks' pauses and rates, what the owner may see, what an attempt's
    outcome does, and the silences (read through ``silences``)."""

    ledger: DeliveryStore
    subscriptions: SubscriptionStore
    cache: SubscriptionCache
    states: ChannelStateStore
    throttle: Throttle
    owner_views: OwnerViews
    outcomes: Outcomes
    silence_store: SilenceStore
    silences: SilenceCache


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        parts: LaneParts,
        transport: Transport,
        channels: Mapping[str, Channel],
        router: OutboxRouter,
        clock: Callable[[], float],
        stopping: Callable[[], bool] = lambda: False,
        spans: Spans | None = None,
    ) -> None:
        """``router``: the fan-out this dispatcher routes with (over the same Redis client),
        between claims in a job, or following the outbox while it listens."""
        self.settings = settings
        self.redis = redis
        self.transport = transport
        self.channels = channels
        self.clock = clock
        self.router = router
        self.ledger = parts.ledger
        self.subs = parts.subscriptions
        self.cache = parts.cache
        self.states = parts.states
        self.throttle = parts.throttle
        self.owner_views = parts.owner_views
        self.outcomes = parts.outcomes
        self.silences = parts.silences
        self.silence_store = parts.silence_store
        self._events: dict[int, StoredEvent] = {}
        self._changed = asyncio.Event()  # a lane finished, work was queued, or a helper ended
        self._woken = False  # work was queued since the last claim
        self._stop_claiming = 0.0  # monotonic time after which no lane is claimed
        self._per_lane = 1  # deliveries taken from a lane's head at a time
        self._handoff = asyncio.Event()  # the routing lease was given up
        self._closing = False
        self.stopping = stopping
        self.spans: Spans = spans if spans is not None else NoSpans()
        self.sent = 0

    async def run(
        self,
        seconds: float,
        concurrency: int = 128,
        per_lane: int = 20,
        listen: aioredis.Redis | None = None,
    ) -> int:
        """Work due lanes until the worker stops or ``seconds`` pass (then finish those in
        flight); without ``listen``, also as soon as nothing is due now. A subscription holds
        at most ``sink_concurrency`` lanes.

        With ``listen`` (a client of its own for blocking reads) the dispatcher also routes
        (holding the routing lease while no other worker does) and, when idle, sleeps until
        new work is queued, a retry falls due, or a lease runs out, instead of polling."""
        active: dict[asyncio.Task[float | None], Claimed] = {}
        helpers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._woken = False
        try:
            if listen is not None:
                helpers = [
                    asyncio.create_task(self._watch(listen)),
                    asyncio.create_task(self._follow(listen)),
                ]
                for helper in helpers:
                    helper.add_done_callback(self._wake)
            return await self._work(seconds, concurrency, per_lane, active, helpers)
        finally:
            self._closing = True
            self._handoff.set()  # a router standing by stops waiting
            if active:
                # Redis failed under the loop: the lanes still in flight are left to their
                # leases (worked again once those run out), and no task is left unawaited.
                log.warning("%d lane(s) left to their leases", len(active))
                for task in active:
                    task.cancel()
                await asyncio.gather(*active, return_exceptions=True)
            # The router gives up its lease on its own within one blocking read; the watcher
            # has nothing to finish.
            for helper in helpers[:1]:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _wake(self, _: object = None) -> None:
        self._changed.set()

    def _queued(self) -> None:
        """Work was queued (a wake entry came): claim."""
        self._woken = True
        self._changed.set()

    async def _work(
        self,
        seconds: float,
        concurrency: int,
        per_lane: int,
        active: dict[asyncio.Task[float | None], Claimed],
        helpers: list[asyncio.Task[None]],
    ) -> int:
        listening = bool(helpers)
        self._stop_claiming = time.monotonic() + seconds
        self._per_lane = per_lane
        held: Counter[str] = Counter()
        renewed = time.monotonic()
        wanted = True  # whether to claim (something may be due)
        claimed_at = time.monotonic()
        while True:
            claiming = self._claiming()
            # Taken and cleared before claiming, so work queued while the claim (or anything
            # else awaited) runs is claimed next; ``wanted`` stays set until a claim is made.
            wanted = wanted or self._woken or not listening
            self._woken = False
            self._changed.clear()
            if claiming and wanted and len(active) < concurrency:
                wanted = False
                claimed_at = time.monotonic()
                if not listening and await self.router.backlog():
                    await self.router.route(seconds=0.5)
                self.owner_views.forget()
                claimed = await self.ledger.claim(
                    self.clock(),
                    concurrency - len(active),
                    per_lane,
                    held,
                    self.settings.sink_concurrency,
                )
                for lane in claimed:
                    held[lane_subscription(lane.lane)] += 1
                    task = asyncio.create_task(self._lane(lane))
                    task.add_done_callback(self._wake)
                    active[task] = lane
            if not active and (not listening or not claiming):
                return self.sent
            for helper in helpers:
                if helper.done():
                    helper.result()  # raises what stopped it (Redis trouble)
            timeout = self._wait_for(listening, renewed)
            if not self._changed.is_set() and not any(task.done() for task in active):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()
            finished = [t for t in active if t.done()]
            for task in finished:
                lane = active.pop(task)
                held[lane_subscription(lane.lane)] -= 1
                if task.exception() is not None:
                    # Only Redis trouble gets here (every other failure is an attempt with an
                    # outcome): the lease runs out and the lane is tried again, nothing lost.
                    log.error("working %s failed", lane.lane, exc_info=task.exception())
                    wanted = True
                elif (due := task.result()) is not None:
                    # Handed back with deliveries left: claim again when they fall due.
                    self.ledger.expect(due)
            held += Counter()  # drop the subscriptions that hold nothing any more
            # Claim again when new work was queued, the time something falls due has come
            # (a lane handed back, a retry, a lease run out, or a lane of a subscription at
            # its cap that a finished lane made room for); and at least every
            # BACKSTOP_SECONDS, so no missed wake can strand a due lane. A lane emptied by its
            # holder needs no claim: what is queued behind a held lane goes on under its lease.
            wanted = (
                wanted
                or self._woken
                or self._due_now()
                or time.monotonic() - claimed_at > BACKSTOP_SECONDS
            )
            if time.monotonic() - renewed > RENEW_EVERY:
                await self.ledger.renew(active.values(), self.clock())
                renewed = time.monotonic()

    def _claiming(self) -> bool:
        """Whether lanes may still be claimed (and held lanes go on with new deliveries)."""
        return time.monotonic() < self._stop_claiming and not self.stopping()

    def _wait_for(self, listening: bool, renewed: float) -> float:
        """How long to wait for a change before looking again."""
        if not listening:
            return POLL_SECONDS
        timeout = min(IDLE_CHECK, max(0.0, renewed + RENEW_EVERY - time.monotonic()))
        due = self.ledger.next_due
        if due is not None and due > self.clock():
            timeout = min(timeout, due - self.clock())
        return timeout

    def _due_now(self) -> bool:
        due = self.ledger.next_due
        return due is not None and due <= self.clock()

    async def _watch(self, listen: aioredis.Redis) -> None:
        """Wake the loop when queueing makes a lane due; notice a router hand-off. The wake
        stream is read through a consumer group: each entry wakes one worker's dispatcher,
        not every one (which would race to claim the same lane)."""
        consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        await _ensure_wake_group(self.redis)
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(WAKE_BLOCK_MS / 1000 + 2.0):  # a dead link fails
                        reply: Any = await listen.xreadgroup(
                            keys.LANES_WAKE_GROUP,
                            consumer,
                            {keys.LANES_WAKE: ">"},
                            count=WAKE_KEEP,
                            block=WAKE_BLOCK_MS,
                            noack=True,
                        )
                except ResponseError as exc:
                    if not stream_gone(exc):
                        raise
                    await _ensure_wake_group(self.redis)  # the stream was deleted
                    continue
                if not reply:
                    continue
                entries = reply[0][1]
                if any(b"route" in (fields or {}) for _, fields in entries):
                    self._handoff.set()
                if any(b"due" in (fields or {}) for _, fields in entries):
                    self._queued()
        finally:
            with contextlib.suppress(*UNAVAILABLE, ResponseError):
                await self.redis.xgroup_delconsumer(
                    keys.LANES_WAKE, keys.LANES_WAKE_GROUP, consumer
                )

    async def _follow(self, listen: aioredis.Redis) -> None:
        """Route each partition's outbox as events arrive while this dispatcher holds that
        partition's routing lease; stand by for the others, taking a lease when its holder
        hands it off or it runs out."""
        if self.router.partitions == 1:
            await self._follow_partition(listen, 0, None)
            return
        # Several partitions: this worker takes its share of the routing leases among the
        # workers routing now (delivery/routing_share.py).
        share = RoutingShare(self.redis, self.router.partitions)
        await share.announce()
        tasks = [asyncio.create_task(self._announce(share))] + [
            asyncio.create_task(self._follow_partition(listen, p, share))
            for p in range(self.router.partitions)
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises what stopped it (Redis trouble)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await share.leave()

    async def _announce(self, share: RoutingShare) -> None:
        while not self._closing and not self.stopping():
            await asyncio.sleep(ANNOUNCE_EVERY)
            await share.announce()

    async def _follow_partition(
        self, listen: aioredis.Redis, partition: int, share: RoutingShare | None
    ) -> None:
        def until() -> bool:
            if share is None:
                return self._closing or self.stopping()
            share.held.add(partition)  # called first once the lease is taken
            return self._closing or self.stopping() or share.gives_up(partition)

        while not self._closing and not self.stopping():
            self._handoff.clear()
            routed = -1
            if share is None or share.may_take():
                try:
                    routed = await self.router.follow(
                        listen,
                        until=until,
                        seen=self._events,  # the lanes find the events routed here decoded
                        partition=partition,
                        holder=share.holder if share is not None else "",
                    )
                finally:
                    if share is not None:
                        share.held.discard(partition)
            if routed < 0 or share is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STANDBY_SECONDS):
                        await self._handoff.wait()

    async def _lane(self, claimed: Claimed) -> float | None:
        """Work a leased lane, going on under its lease with what was queued behind it
        while it was worked, until it is empty, has to wait (a retry, a pause, a rate), has
        been worked for ``LANE_SECONDS``, or the dispatcher stops claiming. Returns when the
        deliveries it handed back are due, None if it handed back none (or lost the lease)."""
        started = time.monotonic()
        heads, read = claimed.heads, None
        while heads:
            result, waits = await self._work_heads(claimed, heads, started, read)
            goes_on = not waits and self._claiming() and time.monotonic() - started < LANE_SECONDS
            more = self._per_lane if goes_on else 0
            found = await self.ledger.complete_and_continue(result, more, self.clock())
            if found is None:
                log.warning(
                    "lost the lease of %s while working it; its new holder redoes it",
                    claimed.lane,
                )
                return None
            if not goes_on:
                return result.due
            heads, read = found.heads, found
        return None

    async def _work_heads(
        self,
        claimed: Claimed,
        heads: tuple[tuple[str, int], ...],
        started: float,
        read: Continued | None = None,
    ) -> tuple[LaneResult, bool]:
        """Work ``heads`` of the lane in order (``read``: what completing the previous ones
        read for them); what it changed, and whether it stopped before the end (the lane
        waits: its result's ``due`` says until when)."""
        records, events, subs, states = await self._prefetch(claimed.lane, heads, read)
        result = LaneResult(claimed.lane, claimed.token, due=self.clock())
        views: IncidentViews = {}
        for delivery_id, seq in heads:
            if time.monotonic() - started > LANE_SECONDS:
                result.due = self.clock()  # give the slot to other lanes; this one is due again
                return result, True
            record = records.get(delivery_id)
            sub = subs.get(record.sub) if record is not None else None
            if record is None or sub is None:  # the subscription was deleted
                result.finished.append(delivery_id)
                result.dropped.append(delivery_id)
                continue
            now = self.clock()
            if record.filter_error:  # never sent: logged once visibility allows, whatever else
                await self._filter_failed(result, record, events.get(seq), sub, now)
                continue
            if not sub.active:
                self.outcomes.dead(result, record, f"subscription disabled: {sub.reason}", now)
                continue
            if (back := self.throttle.paused_until(sub.id)) > now:
                result.due = back  # the sink asked us to wait (Retry-After)
                return result, True
            if sub.rate is not None and (
                wait := await self.throttle.rate_wait(sub.id, sub.rate, now)
            ):
                result.due = now + wait
                return result, True
            stored = events.get(seq)
            if stored is None:
                self.outcomes.dead(result, record, "the event is no longer stored", now)
                continue
            state_key = (sub.id, record.incident)
            verdict: Verdict | None = None
            try:
                verdict = await self.owner_views.judge(stored, sub)
                if not verdict.deliver or verdict.event is None:
                    self.outcomes.withheld(result, record, stored, verdict, now)
                    continue
                # Judged after policy: a delivery withheld for visibility leaves no trace,
                # silenced or not. Held by a silence active now: logged, not sent.
                silence = await self.silences.holding(
                    self.silence_store, sub.id, stored.event.attributes, utc_time(now)
                )
                if silence is not None:
                    self.outcomes.silenced(result, record, stored, silence, now)
                    continue
                state = result.states.get(state_key) or states.get(state_key)
                channel = self.channels[sub.channel]
                result.channel = channel.name
                view = None
                if channel.needs_incident and record.incident:
                    view = await self.owner_views.incident_view(sub.owner, record.incident, views)
                message = Message(
                    record.id, sub, verdict.event, record.incident or None, state, now, view
                )
                mask = mask_for(channel, message)
                outcome = await traced_exchange(
                    self.spans, channel, message, self.transport, mask, record.attempts + 1
                )
            except (RedisError, StoreUnavailable):
                raise
            except SecretUnreadable as exc:
                # Expected when a worker lacks INCIDENTS_SECRET_KEY (or has another one).
                outcome = Outcome(OutcomeKind.FAILED, error=f"cannot open a secret: {exc}")
            except Exception as exc:
                # Whatever went wrong is this delivery's failed attempt: logged, retried and
                # dead-lettered like any other, so the lane moves on and nothing is lost.
                log.exception("delivery %s could not be attempted", record.id)
                error = f"internal error: {type(exc).__name__}: {exc}"
                outcome = Outcome(OutcomeKind.FAILED, error=error)
            self.sent += 1
            if outcome.state is not None and record.incident:
                result.states[state_key] = outcome.state
            if not await self.outcomes.record(result, record, stored, verdict, outcome, sub):
                return result, True
            if outcome.kind == OutcomeKind.GONE:
                subs[sub.id] = replace(
                    sub, status=SubscriptionStatus.DISABLED, reason=outcome.error
                )
        return result, False

    async def _filter_failed(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent | None,
        sub: Subscription,
        now: float,
    ) -> None:
        """Record a delivery routing marked with its sql filter's error, judged for visibility
        first: an event the owner may not see leaves no trace."""
        verdict: Verdict | None = None
        if stored is not None:
            try:
                verdict = await self.owner_views.judge(stored, sub)
            except (RedisError, StoreUnavailable):
                raise
            except Exception:
                # Not judged, so not shown: the owner might not be allowed to know of it.
                log.exception("delivery %s could not be judged", record.id)
        self.outcomes.filter_failed(result, record, stored, verdict, now)

    async def _prefetch(
        self, lane: str, heads: tuple[tuple[str, int], ...], read: Continued | None = None
    ) -> tuple[
        dict[str, Delivery],
        dict[int, StoredEvent],
        dict[str, Subscription],
        dict[tuple[str, str], ChannelState],
    ]:
        """What working ``heads`` needs, read in one round trip (none when ``read``, what
        completing the lane's previous deliveries read, has it): their records and events,
        the subscriptions' version (the cached subscriptions are dropped when it changed),
        the subscription's pause and its channel state for the lane's incident."""
        sub_id, incident = lane_subscription(lane), lane_incident(lane)
        layout = self.ledger.layout
        ids = [i for i, _ in heads]
        if len(self._events) > EVENT_CACHE:
            self._events.clear()
        found = {s: self._events[s] for _, s in heads if s in self._events}
        # Usually none: the router in this process leaves the events it routed in the cache.
        reads = EventReads(sorted({s for _, s in heads if s not in found}), layout)
        raws: Sequence[Any]
        rows: Sequence[Any]
        if read is not None:
            version, paused, state, rows = read.version, read.paused, read.state, read.rows
            silences = read.silences
            raws = await read_events_async(self.redis, reads.sequences, layout)
        else:
            pipe = self.redis.pipeline(transaction=False)
            # One MGET for the versions and the pause; then the lane's channel state, the
            # records, and the events not cached.
            versions = [keys.SUBSCRIPTIONS_VERSION, keys.SILENCES_VERSION, keys.paused(sub_id)]
            if layout.tagged:  # a cluster's pipelines take no multi-key command: a GET each
                for key in versions:
                    pipe.get(key)
            else:
                pipe.mget(versions)
            pipe.hget(lane_space(layout, lane).channel_state(sub_id), incident or "~")
            for delivery_id, seq in heads:
                pipe.hget(record_bucket(seq, layout), delivery_id)
            reads.queue(pipe)
            answers = await pipe.execute()
            if layout.tagged:
                answers = [answers[:3], *answers[3:]]
            (version, silences, paused), state = answers[0], answers[1]
            rows, raws = answers[2 : 2 + len(heads)], reads.found(answers)
        self.cache.observe(version)
        self.silences.observe(silences)
        self.throttle.note(sub_id, paused)
        records = {
            i: Delivery.decoded(i, raw, layout) for i, raw in zip(ids, rows, strict=True) if raw
        }
        # Returned, not only cached: the cache may be emptied (when it grows large) while
        # the lane is being worked.
        for raw in raws:
            if raw:
                stored = stored_event(raw)
                self._events[stored.sequence] = found[stored.sequence] = stored
        states = {(sub_id, incident): ChannelState.decode(state)} if incident and state else {}
        others = {(r.sub, r.incident) for r in records.values()} - {(sub_id, incident)}
        if others:  # not the lane's own subscription and incident: never, but read them
            states.update(await self.states.get_many(others))
        subs = await self.cache.subscriptions(self.subs, {r.sub for r in records.values()})
        return records, found, subs, states


async def _ensure_wake_group(redis: aioredis.Redis) -> None:
    """The wake stream's consumer group (and the stream), from its newest entry on; consumers
    idle for longer than any job lasts are removed (a worker killed, or cut off from Redis
    when its job ended, could not remove its own). The group reads without acknowledgement,
    so a consumer holds no entries."""
    await ensure_stream_group(redis, keys.LANES_WAKE, keys.LANES_WAKE_GROUP, "$")
    for consumer in await redis.xinfo_consumers(keys.LANES_WAKE, keys.LANES_WAKE_GROUP):
        if int(consumer["idle"]) > WAKE_CONSUMER_IDLE_MS:
            await redis.xgroup_delconsumer(keys.LANES_WAKE, keys.LANES_WAKE_GROUP, consumer["name"])
