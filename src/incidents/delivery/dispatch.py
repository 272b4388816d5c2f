"""Working lanes: every leased lane's deliveries are judged by policy, signed and sent in
order; outcomes are recorded, and failures wait for their retry while other lanes go on.

One ``Dispatcher.run`` (one RQ job) keeps up to ``concurrency`` lanes in flight over one
keep-alive HTTP client, claiming more as lanes finish, until none is due or its time is up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from incidents.auth import Principal
from incidents.delivery.fanout import outbox_backlog, route_outbox
from incidents.delivery.lanes import (
    DEAD,
    DELIVERED,
    RETRYING,
    WITHHELD,
    Claimed,
    Delivery,
    LaneResult,
    Ledger,
    lane_subscription,
)
from incidents.delivery.owners import RULE_OWNER_REVOKED, load_owner
from incidents.delivery.sender import FAILED, GONE, Outcome, iso, send
from incidents.delivery.subscriptions import Subscription, SubscriptionCache, SubscriptionStore
from incidents.model.cloudevent import StoredEvent
from incidents.model.schemas import SchemaRegistry
from incidents.policy.access import RULE_CLEARANCE
from incidents.policy.outbound import Verdict, judge
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.events import EventStore

log = logging.getLogger("incidents.delivery")
RENEW_EVERY = 2.0
POLL_SECONDS = 0.01  # how often a running job looks for new outbox entries and due lanes
LANE_SECONDS = 2.0  # a lane hands its slot back after working this long (or at a failure)
MIN_RETRY_AFTER = 1.0  # a Retry-After of 0 still waits this long, so retries cannot spin
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
        client: aiohttp.ClientSession,
        routes: SubscriptionCache,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.redis = redis
        self.cache = cache
        self.client = client
        self.rng = random.Random()
        self.routes = routes
        self.ledger = Ledger(redis)
        self.subs = SubscriptionStore(redis)
        self.store = EventStore(redis)
        self._owners: dict[str, Principal | None] = {}
        self._events: dict[int, StoredEvent] = {}
        self._paused: dict[str, float] = {}  # subscription id -> unix time its sink is back
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
                    self.redis, self.routes, seconds=0.5, retention=self.settings.stream_retention
                )
            claiming = time.monotonic() < stop_claiming and not self.stopping()
            if claiming and len(active) < concurrency:
                await self.cache.sync(self.subs)
                self._owners.clear()
                if len(self._events) > 10_000:
                    self._events.clear()
                claimed = await self.ledger.claim(
                    time.time(),
                    concurrency - len(active),
                    per_lane,
                    held,
                    self.settings.sink_concurrency,
                )
                await self._load_pauses(lane_subscription(c.lane) for c in claimed)
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
                await self.ledger.renew(active.values(), time.time())
                renewed = time.monotonic()

    async def _lane(self, claimed: Claimed) -> None:
        ids = [i for i, _ in claimed.heads]
        records = await self.ledger.records(ids)
        await self._load_events([s for _, s in claimed.heads])
        subs = await self.cache.subscriptions(self.subs, {r.sub for r in records.values()})
        result = LaneResult(claimed.lane, claimed.token, due=time.time())
        started = time.monotonic()
        for delivery_id, seq in claimed.heads:
            if time.monotonic() - started > LANE_SECONDS:
                result.due = time.time()  # give the slot to other lanes; this one is due again
                break
            record = records.get(delivery_id)
            sub = subs.get(record.sub) if record is not None else None
            if record is None or sub is None:  # the subscription was deleted
                result.finished.append(delivery_id)
                result.dropped.append(delivery_id)
                continue
            now = time.time()
            if not sub.active:
                self._dead(result, record, f"subscription disabled: {sub.reason}", now)
                continue
            if (back := self._paused.get(sub.id, 0.0)) > now:
                result.due = back  # the sink asked us to wait (Retry-After)
                break
            if sub.rate is not None and (wait := await self._rate_wait(sub, now)):
                result.due = now + wait
                break
            stored = self._events.get(seq)
            if stored is None:
                self._dead(result, record, "the event is no longer stored", now)
                continue
            verdict: Verdict | None = None
            try:
                verdict = await self._judge(stored, sub)
                if not verdict.deliver or verdict.event is None:
                    self._withheld(result, record, stored, verdict, now)
                    continue
                outcome = await send(
                    self.client,
                    sub.spec.sink,
                    record.id,
                    verdict.event,
                    sub.spec.mode,
                    sub.signing_secrets(now),
                    _headers(sub),
                    self.settings.delivery_timeout,
                )
            except RedisError:
                raise
            except Exception as exc:
                # Whatever went wrong is this delivery's failed attempt: logged, retried and
                # dead-lettered like any other, so the lane moves on and nothing is lost.
                log.exception("delivery %s could not be attempted", record.id)
                error = f"internal error: {type(exc).__name__}: {exc}"
                outcome = Outcome(FAILED, error=error)
            self.sent += 1
            if not await self._record(result, record, stored, verdict, outcome, sub):
                break
            if outcome.kind == GONE:
                subs[sub.id] = replace(sub, status="disabled", reason=outcome.error)
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
        now = time.time()
        attempt = record.attempts + 1
        entry = self._entry(record, stored, now, outcome.kind, attempt)
        entry.update(
            status_code=outcome.status,
            latency_ms=outcome.latency_ms,
            error=outcome.error or None,
            response=outcome.body or None,
        )
        if verdict is not None and verdict.redacted:
            entry.update(rule=verdict.rule, redacted=list(verdict.redacted))
        done = replace(record, attempts=attempt, last_code=outcome.status, last_error=outcome.error)
        if outcome.kind == DELIVERED:
            result.healthy.add(sub.id)
            result.log.append((sub.id, entry))
            result.finished.append(record.id)
            result.records.append(replace(done, state=DELIVERED, next_at=None))
            return True
        if outcome.kind == GONE:
            await self.subs.set_status(sub.id, "disabled", outcome.error, _dt(now))
            result.log.append((sub.id, entry))
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
            await self._pause(sub.id, now + delay)
        if delay is None:
            entry["outcome"] = DEAD
            result.log.append((sub.id, entry))
            self._dead(result, done, f"retries exhausted; last: {outcome.error}", now, logged=True)
            return True
        entry["next_attempt"] = iso(now + delay)
        result.log.append((sub.id, entry))
        result.records.append(replace(done, state=RETRYING, next_at=now + delay))
        result.due = now + delay
        return False

    def _entry(
        self, record: Delivery, stored: StoredEvent, now: float, outcome: str, attempt: int
    ) -> dict[str, Any]:
        return {
            "delivery": record.id,
            "webhook_id": record.id,
            "sequence": record.seq,
            "event_id": stored.event.id,
            "type": stored.event.type,
            "incident": record.incident or None,
            "attempt": attempt,
            "time": iso(now),
            "outcome": outcome,
            "next_attempt": None,
        }

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
        entry = self._entry(record, stored, now, WITHHELD, record.attempts)
        entry.update(rule=verdict.rule, error=verdict.reason)
        result.log.append((record.sub, entry))
        result.records.append(replace(record, state=WITHHELD, reason=verdict.reason, next_at=None))

    def _dead(
        self, result: LaneResult, record: Delivery, reason: str, now: float, logged: bool = False
    ) -> None:
        if not logged:
            result.log.append(
                (
                    record.sub,
                    {"delivery": record.id, "webhook_id": record.id, "sequence": record.seq,
                     "incident": record.incident or None, "attempt": record.attempts,
                     "time": iso(now), "outcome": DEAD, "error": reason, "next_attempt": None},
                )
            )  # fmt: skip
        result.finished.append(record.id)
        result.dead.append((record.id, now))
        result.records.append(replace(record, state=DEAD, reason=reason, next_at=None))

    async def _judge(self, stored: StoredEvent, sub: Subscription) -> Verdict:
        if sub.owner not in self._owners:
            self._owners[sub.owner] = await load_owner(self.redis, sub.owner)
        owner = self._owners[sub.owner]
        if owner is None:
            detail = f"the owner {sub.owner!r} has been revoked"
            return Verdict(False, None, rule=RULE_OWNER_REVOKED, detail=detail)
        return judge(stored.event, owner, self.registry)

    async def _load_events(self, seqs: list[int]) -> None:
        missing = [s for s in seqs if s not in self._events]
        for stored in await self.store.get_many(missing):
            self._events[stored.sequence] = stored

    async def _load_pauses(self, sub_ids: Iterable[str]) -> None:
        """Learn which of these subscriptions' sinks asked (Retry-After) to be left alone."""
        wanted = list(dict.fromkeys(sub_ids))
        if not wanted:
            return
        found = await self.redis.mget([keys.paused(s) for s in wanted])
        for sub_id, raw in zip(wanted, found, strict=True):
            if raw is None:
                self._paused.pop(sub_id, None)
            else:
                self._paused[sub_id] = float(raw)

    async def _pause(self, sub_id: str, until: float) -> None:
        """Hold every lane of a subscription until ``until`` (its sink's Retry-After)."""
        self._paused[sub_id] = max(until, self._paused.get(sub_id, 0.0))
        await self.redis.set(
            keys.paused(sub_id), repr(self._paused[sub_id]), pxat=int(until * 1000) + 1000
        )

    async def _rate_wait(self, sub: Subscription, now: float) -> float:
        """Seconds to wait before the next delivery under the handshake's granted rate."""
        window = int(now // 60)
        key = keys.rate_window(sub.id, window)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
        if int(count) <= (sub.rate or 0):
            return 0.0
        return (window + 1) * 60 - now

    async def _failing(self, sub: Subscription, now: float) -> None:
        """Note a failure; disable the subscription once it has failed for disable_after."""
        key = keys.subscription(sub.id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(key, "failing_since", repr(now))
        pipe.hget(key, "failing_since")
        _, since = await pipe.execute()
        if since is None:
            return
        first = float(since)
        if now - first >= self.settings.disable_after:
            reason = f"failing continuously since {iso(first)} (INCIDENTS_DISABLE_AFTER)"
            await self.subs.set_status(sub.id, "disabled", reason, _dt(now))


def _headers(sub: Subscription) -> Mapping[str, str]:
    """The subscription's own headers and, once a handshake granted it, the origin it was
    granted to (every delivery carries WebHook-Request-Origin, webhook spec 4.1.2)."""
    if sub.origin is None:
        return sub.spec.headers
    return {**sub.spec.headers, "WebHook-Request-Origin": sub.origin}


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
