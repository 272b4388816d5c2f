"""Working lanes: every leased lane's deliveries are judged by policy, handed to their
subscription's channel and sent in order; outcomes are recorded, and failures wait for their
retry while other lanes go on.

One ``Dispatcher.run`` (one RQ job) keeps up to ``concurrency`` lanes in flight over one
transport (one keep-alive HTTP client), claiming more as lanes finish, until none is due or
its time is up. Wall-clock time comes from the injected ``clock``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from incidents.auth import Principal, admin_principal
from incidents.delivery.attempt_log import AttemptEntry, iso
from incidents.delivery.channel_state import ChannelStateStore
from incidents.delivery.channels.base import (
    Channel,
    Message,
    Outcome,
    OutcomeKind,
    Transport,
    exchange,
)
from incidents.delivery.fanout import outbox_backlog, route_outbox
from incidents.delivery.lanes import (
    Claimed,
    Delivery,
    DeliveryState,
    LaneResult,
    Ledger,
    lane_subscription,
)
from incidents.delivery.subscription_spec import SubscriptionStatus
from incidents.delivery.subscriptions import Subscription, SubscriptionCache, SubscriptionStore
from incidents.delivery.throttle import Throttle
from incidents.errors import NotFound, StoreUnavailable
from incidents.model.cloudevent import StoredEvent
from incidents.model.schemas import SchemaRegistry
from incidents.policy.access import RULE_CLEARANCE
from incidents.policy.outbound import Verdict, judge
from incidents.policy.principals import PrincipalStore
from incidents.queries.incidents import IncidentQueries
from incidents.queries.visibility import Viewer
from incidents.settings import Settings
from incidents.store.events import EventStore

log = logging.getLogger("incidents.delivery")
RENEW_EVERY = 2.0
POLL_SECONDS = 0.01  # how often a running job looks for new outbox entries and due lanes
LANE_SECONDS = 2.0  # a lane hands its slot back after working this long (or at a failure)
MIN_RETRY_AFTER = 1.0  # a Retry-After of 0 still waits this long, so retries cannot spin
RULE_OWNER_REVOKED = "owner-revoked"
# Withheld because the owner may not even know the event exists (another tenant's, or
# restricted): such a delivery is dropped without a trace in the owner's delivery log. Only a
# clearance refusal (or a revoked owner) is logged, as the delivery log's "why".
LOGGED_WITHHOLDING = (RULE_CLEARANCE, RULE_OWNER_REVOKED)


def retry_delay(
    schedule: tuple[float, ...],
    attempt: int,
    asked: float | None,
    rng: random.Random,
    longest: float,
) -> float | None:
    """Seconds until the next try after failed attempt number ``attempt``; None: give up.
    A sink's Retry-After is waited out in full, up to ``longest`` (INCIDENTS_MAX_RETRY_AFTER)."""
    if attempt > len(schedule):
        return None
    if asked is not None:
        return min(max(asked, MIN_RETRY_AFTER), longest)
    return schedule[attempt - 1] * rng.uniform(0.8, 1.2)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistry,
        redis: aioredis.Redis,
        cache: SubscriptionCache,
        transport: Transport,
        channels: Mapping[str, Channel],
        routes: SubscriptionCache,
        clock: Callable[[], float],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.redis = redis
        self.cache = cache
        self.transport = transport
        self.channels = channels
        self.clock = clock
        self.rng = random.Random()
        self.routes = routes
        self.ledger = Ledger(redis)
        self.subs = SubscriptionStore(redis)
        self.store = EventStore(redis)
        self.principals = PrincipalStore(redis)
        self.states = ChannelStateStore(redis)
        self.incidents = IncidentQueries(redis)
        self.throttle = Throttle(redis)
        self._owners: dict[str, Principal | None] = {}
        self._events: dict[int, StoredEvent] = {}
        self.stopping = stopping
        self.sent = 0

    async def run(self, seconds: float, concurrency: int = 128, per_lane: int = 20) -> int:
        """Work due lanes until none is left, the worker stops, or ``seconds`` pass (then
        finish those in flight). A subscription holds at most ``sink_concurrency`` lanes."""
        active: dict[asyncio.Task[None], Claimed] = {}
        try:
            return await self._work(seconds, concurrency, per_lane, active)
        finally:
            if active:
                # Redis failed under the loop: the lanes still in flight are left to their
                # leases (worked again once those run out), and no task is left unawaited.
                log.warning("%d lane(s) left to their leases", len(active))
                for task in active:
                    task.cancel()
                await asyncio.gather(*active, return_exceptions=True)

    async def _work(
        self,
        seconds: float,
        concurrency: int,
        per_lane: int,
        active: dict[asyncio.Task[None], Claimed],
    ) -> int:
        stop_claiming = time.monotonic() + seconds
        held: Counter[str] = Counter()
        renewed = time.monotonic()
        while True:
            if await outbox_backlog(self.redis):
                # Route here too, so new events do not wait for this job to end before a
                # routing job can run in this worker.
                await route_outbox(
                    self.redis,
                    self.routes,
                    seconds=0.5,
                    retention=self.settings.stream_retention,
                    clock=self.clock,
                )
            claiming = time.monotonic() < stop_claiming and not self.stopping()
            if claiming and len(active) < concurrency:
                await self.cache.sync(self.subs)
                self._owners.clear()
                if len(self._events) > 10_000:
                    self._events.clear()
                claimed = await self.ledger.claim(
                    self.clock(),
                    concurrency - len(active),
                    per_lane,
                    held,
                    self.settings.sink_concurrency,
                )
                await self.throttle.load(lane_subscription(c.lane) for c in claimed)
                for lane in claimed:
                    held[lane_subscription(lane.lane)] += 1
                    active[asyncio.create_task(self._lane(lane))] = lane
            if not active:
                return self.sent
            done, _ = await asyncio.wait(
                active, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                lane = active.pop(task)
                held[lane_subscription(lane.lane)] -= 1
                if task.exception() is not None:
                    # Only Redis trouble gets here (every other failure is an attempt with an
                    # outcome): the lease runs out and the lane is tried again, nothing lost.
                    log.error("working %s failed", lane.lane, exc_info=task.exception())
            held += Counter()  # drop the subscriptions that hold nothing any more
            if time.monotonic() - renewed > RENEW_EVERY:
                await self.ledger.renew(active.values(), self.clock())
                renewed = time.monotonic()

    async def _lane(self, claimed: Claimed) -> None:
        ids = [i for i, _ in claimed.heads]
        records = await self.ledger.records(ids)
        await self._load_events([s for _, s in claimed.heads])
        subs = await self.cache.subscriptions(self.subs, {r.sub for r in records.values()})
        states = await self.states.get_many((r.sub, r.incident) for r in records.values())
        result = LaneResult(claimed.lane, claimed.token, due=self.clock())
        views: dict[tuple[str, str], Mapping[str, object] | None] = {}
        started = time.monotonic()
        for delivery_id, seq in claimed.heads:
            if time.monotonic() - started > LANE_SECONDS:
                result.due = self.clock()  # give the slot to other lanes; this one is due again
                break
            record = records.get(delivery_id)
            sub = subs.get(record.sub) if record is not None else None
            if record is None or sub is None:  # the subscription was deleted
                result.finished.append(delivery_id)
                result.dropped.append(delivery_id)
                continue
            now = self.clock()
            if not sub.active:
                self._dead(result, record, f"subscription disabled: {sub.reason}", now)
                continue
            if (back := self.throttle.paused_until(sub.id)) > now:
                result.due = back  # the sink asked us to wait (Retry-After)
                break
            if sub.rate is not None and (
                wait := await self.throttle.rate_wait(sub.id, sub.rate, now)
            ):
                result.due = now + wait
                break
            stored = self._events.get(seq)
            if stored is None:
                self._dead(result, record, "the event is no longer stored", now)
                continue
            state_key = (sub.id, record.incident)
            verdict: Verdict | None = None
            try:
                verdict = await self._judge(stored, sub)
                if not verdict.deliver or verdict.event is None:
                    self._withheld(result, record, stored, verdict, now)
                    continue
                state = result.states.get(state_key) or states.get(state_key)
                channel = self.channels[sub.channel]
                view = None
                if channel.needs_incident and record.incident:
                    view = await self._incident_view(sub.owner, record.incident, views)
                message = Message(
                    record.id, sub, verdict.event, record.incident or None, state, now, view
                )
                outcome = await exchange(channel, message, self.transport)
            except (RedisError, StoreUnavailable):
                raise
            except Exception as exc:
                # Whatever went wrong is this delivery's failed attempt: logged, retried and
                # dead-lettered like any other, so the lane moves on and nothing is lost.
                log.exception("delivery %s could not be attempted", record.id)
                error = f"internal error: {type(exc).__name__}: {exc}"
                outcome = Outcome(OutcomeKind.FAILED, error=error)
            self.sent += 1
            if outcome.state is not None and record.incident:
                result.states[state_key] = outcome.state
            if not await self._record(result, record, stored, verdict, outcome, sub):
                break
            if outcome.kind == OutcomeKind.GONE:
                subs[sub.id] = replace(
                    sub, status=SubscriptionStatus.DISABLED, reason=outcome.error
                )
        if not await self.ledger.complete(result):
            log.warning(
                "lost the lease of %s while working it; its new holder redoes it", claimed.lane
            )

    async def _record(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent,
        verdict: Verdict | None,
        outcome: Outcome,
        sub: Subscription,
    ) -> bool:
        """Record an attempt; False when the lane must wait for this delivery's retry."""
        now = self.clock()
        attempt = record.attempts + 1
        entry = self._entry(record, stored, now, outcome.kind, attempt)
        entry.sent = outcome
        if verdict is not None and verdict.redacted:
            entry.rule, entry.redacted = verdict.rule, tuple(verdict.redacted)
        result.log.append(entry)
        done = replace(record, attempts=attempt, last_code=outcome.status, last_error=outcome.error)
        if outcome.kind == OutcomeKind.DELIVERED:
            result.healthy.add(sub.id)
            result.finished.append(record.id)
            result.records.append(replace(done, state=DeliveryState.DELIVERED, next_at=None))
            return True
        if outcome.kind == OutcomeKind.GONE:
            await self.subs.set_status(sub.id, SubscriptionStatus.DISABLED, outcome.error, _dt(now))
            self._dead(result, done, outcome.error, now, logged=True)
            return True
        await self._failing(sub, now)
        delay = retry_delay(
            self.settings.retry_schedule,
            attempt,
            outcome.retry_after,
            self.rng,
            self.settings.max_retry_after,
        )
        if delay is not None and outcome.retry_after is not None:
            await self.throttle.pause(sub.id, now + delay)
        if delay is None:
            entry.outcome = DeliveryState.DEAD
            self._dead(result, done, f"retries exhausted; last: {outcome.error}", now, logged=True)
            return True
        entry.next_attempt = now + delay
        result.records.append(replace(done, state=DeliveryState.RETRYING, next_at=now + delay))
        result.due = now + delay
        return False

    @staticmethod
    def _entry(
        record: Delivery, stored: StoredEvent | None, now: float, outcome: str, attempt: int
    ) -> AttemptEntry:
        return AttemptEntry(
            subscription=record.sub,
            delivery=record.id,
            sequence=record.seq,
            incident=record.incident or None,
            attempt=attempt,
            time=now,
            outcome=outcome,
            event=None if stored is None else (stored.event.id, stored.event.type),
        )

    def _withheld(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent,
        verdict: Verdict,
        now: float,
    ) -> None:
        result.finished.append(record.id)
        if verdict.rule not in LOGGED_WITHHOLDING:
            result.dropped.append(record.id)  # no trace: the owner may not know it exists
            return
        entry = self._entry(record, stored, now, DeliveryState.WITHHELD, record.attempts)
        entry.rule, entry.error = verdict.rule, verdict.reason
        result.log.append(entry)
        withheld = replace(record, state=DeliveryState.WITHHELD, reason=verdict.reason)
        result.records.append(replace(withheld, next_at=None))

    def _dead(
        self, result: LaneResult, record: Delivery, reason: str, now: float, logged: bool = False
    ) -> None:
        if not logged:
            entry = self._entry(record, None, now, DeliveryState.DEAD, record.attempts)
            entry.error = reason
            result.log.append(entry)
        result.finished.append(record.id)
        result.dead.append((record.id, now))
        result.records.append(
            replace(record, state=DeliveryState.DEAD, reason=reason, next_at=None)
        )

    async def _judge(self, stored: StoredEvent, sub: Subscription) -> Verdict:
        if sub.owner not in self._owners:
            self._owners[sub.owner] = await self._owner(sub.owner)
        owner = self._owners[sub.owner]
        if owner is None:
            detail = f"the owner {sub.owner!r} has been revoked"
            return Verdict(False, None, rule=RULE_OWNER_REVOKED, detail=detail)
        return judge(stored.event, owner, self.registry)

    async def _incident_view(
        self,
        owner_id: str,
        incident: str,
        views: dict[tuple[str, str], Mapping[str, object] | None],
    ) -> Mapping[str, object] | None:
        """The incident as the owner may read it through the API (the read layer's view), read
        once per lane; None when the owner may not see it (or it is not stored)."""
        if (owner_id, incident) not in views:
            owner = self._owners.get(owner_id)
            view: Mapping[str, object] | None = None
            if owner is not None:
                try:
                    view = await self.incidents.get(Viewer(owner, self.registry), incident)
                except NotFound:
                    view = None
            views[owner_id, incident] = view
        return views[owner_id, incident]

    async def _owner(self, principal_id: str) -> Principal | None:
        """The subscription owner's principal as it is now; None once it has been revoked
        (principals can be revoked while their subscriptions remain)."""
        if principal_id == admin_principal().id:
            return admin_principal()
        try:
            found = await self.principals.get(principal_id)
        except ValueError:  # a hash that no longer describes a valid principal
            return None
        return None if found is None else found[0]

    async def _load_events(self, seqs: list[int]) -> None:
        missing = [s for s in seqs if s not in self._events]
        for stored in await self.store.get_many(missing):
            self._events[stored.sequence] = stored

    async def _failing(self, sub: Subscription, now: float) -> None:
        """Note a failure; disable the subscription once it has failed for disable_after."""
        first = await self.subs.note_failure(sub.id, now)
        if first is not None and now - first >= self.settings.disable_after:
            reason = f"failing continuously since {iso(first)} (INCIDENTS_DISABLE_AFTER)"
            await self.subs.set_status(sub.id, SubscriptionStatus.DISABLED, reason, _dt(now))


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
