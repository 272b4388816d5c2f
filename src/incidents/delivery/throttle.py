"""How fast a subscription may be sent to: a sink's Retry-After pauses every lane of its
subscription (shared by every worker through ``incidents:sub:<id>:paused``), and a rate
granted by the handshake caps deliveries per minute (``incidents:rate:<id>:<minute>``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from incidents.store import keys

# How long a pause's key outlives the pause, in real time. The stored value (the worker's
# clock) decides whether a sink is paused; the key's expiry only clears it away later, and is
# set as a duration, since the worker's clock need not be the server's.
PAUSE_KEPT_SECONDS = 60.0


class Throttle:
    def __init__(self, redis: aioredis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.clock = clock
        self._paused: dict[str, float] = {}  # subscription id -> unix time its sink is back

    def paused_until(self, sub_id: str) -> float:
        """Unix time until which the subscription's sink asked to be left alone (0: none)."""
        return self._paused.get(sub_id, 0.0)

    async def load(self, sub_ids: Iterable[str]) -> None:
        """Learn which of these subscriptions' sinks asked (Retry-After) to be left alone."""
        wanted = list(dict.fromkeys(sub_ids))
        if not wanted:
            return
        found = await self.redis.mget([keys.paused(s) for s in wanted])
        for sub_id, raw in zip(wanted, found, strict=True):
            self.note(sub_id, raw)

    def note(self, sub_id: str, raw: bytes | str | None) -> None:
        """Learn a subscription's pause from the value of its ``keys.paused`` key (read along
        with other work). A value read before this worker's own pause was stored (another
        lane's read, in flight meanwhile) does not take back a pause that has not ended yet:
        nothing but expiry, a minute after a pause ends, removes the key."""
        stored = float(raw) if raw is not None else 0.0
        mine = self._paused.get(sub_id, 0.0)
        if mine > stored and mine > self.clock():
            return
        if raw is None:
            self._paused.pop(sub_id, None)
        else:
            self._paused[sub_id] = stored

    async def pause(self, sub_id: str, until: float) -> None:
        """Hold every lane of a subscription until ``until`` (its sink's Retry-After)."""
        self._paused[sub_id] = max(until, self._paused.get(sub_id, 0.0))
        left = max(0.0, self._paused[sub_id] - self.clock())
        await self.redis.set(
            keys.paused(sub_id),
            repr(self._paused[sub_id]),
            px=int((left + PAUSE_KEPT_SECONDS) * 1000),
        )

    async def rate_wait(self, sub_id: str, rate: int, now: float) -> float:
        """Seconds to wait before the next delivery under a rate of ``rate`` per minute."""
        window = int(now // 60)
        key = keys.rate_window(sub_id, window)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
        if int(count) <= rate:
            return 0.0
        return (window + 1) * 60 - now
