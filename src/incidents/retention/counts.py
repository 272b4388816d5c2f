"""What retention removed, by kind (``incidents_retention_removed_total``): each partition's
sweeper counts in its own ``retention:removed`` hash, and a reader sums them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import cast

import redis.asyncio as aioredis

from incidents.store import keys


def removed_keys(layout: keys.Partitions) -> list[str]:
    """The hashes kind -> count, one per partition, to read (in one pipeline, say)."""
    return [space.RETENTION_REMOVED for space in layout]


def summed(found: Iterable[Mapping[bytes, bytes]]) -> Counter[str]:
    """The counts of every partition's hash (as ``HGETALL`` answers them), added up."""
    total: Counter[str] = Counter()
    for counts in found:
        for kind, n in counts.items():
            total[kind.decode()] += int(n)
    return total


async def removed(redis: aioredis.Redis, layout: keys.Partitions) -> Counter[str]:
    """What retention removed in every partition, by kind."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in removed_keys(layout):
            pipe.hgetall(key)
        found = await pipe.execute()
    return summed(cast(list[dict[bytes, bytes]], found))
