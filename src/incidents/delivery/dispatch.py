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
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from incidents.auth import Principal
from incidents.delivery import keys
from incidents.delivery.ledger import (
    DEAD,
    DELIVERED,
    RETRYING,
    WITHHELD,
    Claimed,
    Delivery,
    LaneResult,
    Ledger,
)
from incidents.delivery.owners import RULE_OWNER_REVOKED, load_owner
from incidents.delivery.routing import route_outbox
from incidents.delivery.sender import GONE, Outcome, iso, send
from incidents.delivery.subscriptions import Subscription, SubscriptionCache, SubscriptionStore
from incidents.ingest.schemas import SchemaRegistry
from incidents.model.cloudevent import StoredEvent
from incidents.policy.outbound import Verdict, judge
from incidents.settings import Settings
from incidents.store.events import EventStore
from incidents.store.keys import OUTBOX

log = logging.getLogger("incidents.delivery")
RENEW_EVERY = 2.0
POLL_SECONDS = 0.01  # how often a running job looks for new outbox entries and due lanes


def retry_delay(
    schedule: tuple[float, ...], attempt: int, asked: float | None, rng: random.Random
) -> float | None:
    """Seconds until the next try after failed attempt number ``attempt``; None: give up.
    A sink's Retry-After is honoured up to twice the scheduled delay."""
    if attempt > len(schedule):
        return None
    planned = schedule[attempt - 1]
    if asked is not None:
        return min(asked, planned * 2)
    return planned * rng.uniform(0.8, 1.2)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistry,
        redis: aioredis.Redis,
        cache: SubscriptionCache,
        client: aiohttp.ClientSession,
        routes: SubscriptionCache,
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
        self.sent = 0

    async def run(self, seconds: float, concurrency: int = 128, per_lane: int = 20) -> int:
        """Work due lanes for up to ``seconds`` (then finish those in flight)."""
        stop_claiming = time.monotonic() + seconds
        active: dict[asyncio.Task[None], Claimed] = {}
        renewed = time.monotonic()
        while True:
            if await self.redis.xlen(OUTBOX):
                # Route here too, so new events do not wait for this job to end before a
                # routing job can run in this worker.
                await route_outbox(self.redis, self.routes, seconds=0.5)
            if time.monotonic() < stop_claiming and len(active) < concurrency:
                await self.cache.sync(self.subs)
                self._owners.clear()
                if len(self._events) > 10_000:
                    self._events.clear()
                for claimed in await self.ledger.claim(
                    time.time(), concurrency - len(active), per_lane
                ):
                    active[asyncio.create_task(self._lane(claimed))] = claimed
            if not active:
                return self.sent
            done, _ = await asyncio.wait(
                active, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                claimed = active.pop(task)
                if task.exception() is not None:
                    # The lease runs out and the lane is tried again: nothing is lost.
                    log.error("working %s failed", claimed.lane, exc_info=task.exception())
            if time.monotonic() - renewed > RENEW_EVERY:
                await self.ledger.renew(active.values(), time.time())
                renewed = time.monotonic()

    async def _lane(self, claimed: Claimed) -> None:
        ids = [i for i, _ in claimed.heads]
        records = await self.ledger.records(ids)
        await self._load_events([s for _, s in claimed.heads])
        subs = await self.cache.subscriptions(self.subs, {r.sub for r in records.values()})
        result = LaneResult(claimed.lane, claimed.token, due=time.time())
        for delivery_id, seq in claimed.heads:
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
            if sub.rate is not None and (wait := await self._rate_wait(sub, now)):
                result.due = now + wait
                break
            stored = self._events.get(seq)
            if stored is None:
                self._dead(result, record, "the event is no longer stored", now)
                continue
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
                sub.spec.headers,
                self.settings.delivery_timeout,
            )
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
        verdict: Verdict,
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
        if verdict.redacted:
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
        delay = retry_delay(self.settings.retry_schedule, attempt, outcome.retry_after, self.rng)
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
        entry = self._entry(record, stored, now, WITHHELD, record.attempts)
        entry.update(rule=verdict.rule, error=verdict.reason)
        result.log.append((record.sub, entry))
        result.finished.append(record.id)
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


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
