"""Versioned documents (incidents, alerts) read and written during one planning pass.

The store writes each document only if its version is still the one read here; reads are
cached for the pass so that several events of one batch chain their versions in order.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from incidents.ingest.pipeline import Pending
from incidents.store.events import VersionedWrite
from incidents.store.redis import guarded


class Documents:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._cache: dict[str, tuple[int, dict[str, Any] | None]] = {}

    async def read(self, key: str) -> dict[str, Any] | None:
        if key not in self._cache:
            async with guarded("reading a document"):
                version, raw = await self.redis.hmget(key, ["v", "j"])
            doc = orjson.loads(raw) if raw else None
            self._cache[key] = (int(version) if version else 0, doc)
        return self._cache[key][1]

    def write(self, pending: Pending, key: str, document: dict[str, Any]) -> None:
        """Plan ``document`` for ``key`` with the event; ``read`` must have been called."""
        version, _ = self._cache[key]
        pending.writes.append(VersionedWrite(key, version, document))
        self._cache[key] = (version + 1, document)


async def read_many(redis: aioredis.Redis, keys: list[str]) -> list[dict[str, Any] | None]:
    """Current documents at ``keys`` (None where absent), in one round trip."""
    if not keys:
        return []
    async with guarded("reading documents"), redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(key, "j")
        raws = await pipe.execute()
    return [orjson.loads(r) if r else None for r in raws]
