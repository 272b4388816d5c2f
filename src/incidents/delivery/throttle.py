"""How fast a subscription may be sent to: a sink's Retry-After pauses every lane of its
subscription (shared by every worker through ``incidents:sub:<id>:paused``), and a rate
granted by the handshake caps deliveries per minute (``incidents:rate:<id>:<minute>``)."""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from incidents.store import keys


class Throttle:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
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
            if raw is None:
                self._paused.pop(sub_id, None)
            else:
                self._paused[sub_id] = float(raw)

    async def pause(self, sub_id: str, until: float) -> None:
        """Hold every lane of a subscription until ``until`` (its sink's Retry-After)."""
        self._paused[sub_id] = max(until, self._paused.get(sub_id, 0.0))
        await self.redis.set(
            keys.paused(sub_id), repr(self._paused[sub_id]), pxat=int(until * 1000) + 1000
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
