"""Each routing worker's share of the partitions' routing leases.

With several partitions, every listening worker follows every partition's outbox and takes
its routing lease when it is free (``Dispatcher._follow``). Left at that, the first worker to
start would route every partition and the others stand by. Instead each worker announces
itself in ``keys.ROUTERS`` (renewed every ``ANNOUNCE_EVERY`` seconds, ending after
``ANNOUNCED_FOR``), and holds at most ``ceil(partitions / routers)`` leases: a worker over its
share gives up its highest partition, which the others, under theirs, take. A worker that
dies drops out of the count when its announcement ends, as its leases run out, so the others'
share grows and they take its partitions over.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from incidents.store import keys
from incidents.store.redis import UNAVAILABLE

ANNOUNCE_EVERY = 1.0  # seconds between a routing worker's announcements
ANNOUNCED_FOR = 6.0  # how long one lasts: the routing lease's length (routing.fanout.LOCK_MS)


class RoutingShare:
    """One worker's place among the routing workers: ``held`` partitions, ``share`` the most
    it should hold. ``holder`` (``r<pid>.<random>-``) begins each of its lease tokens, so a
    lease says which worker process holds it."""

    def __init__(
        self, redis: aioredis.Redis, partitions: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis, self.partitions, self.clock = redis, partitions, clock
        self.holder = f"r{os.getpid()}.{secrets.token_hex(3)}-"
        self.held: set[int] = set()
        self.routers = 1

    @property
    def share(self) -> int:
        return math.ceil(self.partitions / max(1, self.routers))

    def may_take(self) -> bool:
        """Whether to try another partition's lease (under the share)."""
        return len(self.held) < self.share

    def gives_up(self, partition: int) -> bool:
        """Whether to give up the lease of ``partition``, held: the highest one held while over
        the share (one at a time, so the others can take them up)."""
        return len(self.held) > self.share and partition == max(self.held)

    async def announce(self) -> None:
        """Say this worker routes, for ANNOUNCED_FOR seconds; count those that do."""
        now = self.clock()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.ROUTERS, {self.holder: now + ANNOUNCED_FOR})
            pipe.zremrangebyscore(keys.ROUTERS, "-inf", now)
            pipe.zcard(keys.ROUTERS)
            answers = await pipe.execute()
        self.routers = max(1, int(answers[-1]))

    async def leave(self) -> None:
        """No longer counted (a worker that stops: the others' share grows at once)."""
        with contextlib.suppress(*UNAVAILABLE):
            await self.redis.zrem(keys.ROUTERS, self.holder)
