"""Reading the JSON documents (incidents, alerts) the gateway keeps in Redis hashes.

Each document is a hash with its JSON under ``j`` and its version under ``v``; versioned
writes go through ``EventStore.accept``, with the event that caused them.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from incidents.store.redis import guarded


async def read_many(redis: aioredis.Redis, keys: list[str]) -> list[dict[str, Any] | None]:
    """Current documents at ``keys`` (None where absent), in one round trip."""
    if not keys:
        return []
    async with guarded("reading documents"), redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(key, "j")
        raws = await pipe.execute()
    return [orjson.loads(r) if r else None for r in raws]
