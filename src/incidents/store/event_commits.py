"""Group commit of one partition's accepted events: the acceptance script's calls.

Requests queued for a partition while an earlier script call is on its way to Redis are
stored together in the next call (up to ``MAX_GROUPS_PER_CALL`` requests), each request whole
or not at all. The call declares the partition's keys (its sequence counter first, so a
cluster client sends it to the primary of the partition's slot), and the script numbers the
events ``counter * P + p`` (``keys.Partitions.sequence``). With ``min_replicas``, ``WAIT``
follows on the same connection, on the same node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from incidents.errors import StoreUnavailable
from incidents.store import keys
from incidents.store.redis import guarded

# Requests committed by one script call at most (bounds how long Redis is busy with one call).
MAX_GROUPS_PER_CALL = 128

# One request's part for the script: its group of the JSON request, the strings stored as
# they are (each event's tail, then its documents' JSON), and where its reply goes.
Waiting = tuple[list[dict[str, Any]], list[bytes], "asyncio.Future[list[Any]]"]


class PartitionCommits:
    """The acceptance script's calls for one partition (``space``), one at a time."""

    def __init__(
        self,
        redis: aioredis.Redis,
        script: AsyncScript,
        space: keys.Keyspace,
        min_replicas: int,
        replica_timeout_ms: int,
    ) -> None:
        self.redis, self.script, self.space = redis, script, space
        self.min_replicas, self.replica_timeout_ms = min_replicas, replica_timeout_ms
        self.script_keys = [space.SEQUENCE, space.OUTBOX]
        self.request = {
            "events": space.EVENTS_PREFIX,
            "bucket": space.event_bucket_size,
            "count": space.count,
            "partition": space.partition,
        }
        self._waiting: list[Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    def enqueue(
        self,
        loop: asyncio.AbstractEventLoop,
        group: list[dict[str, Any]],
        blobs: list[bytes],
    ) -> asyncio.Future[list[Any]]:
        """Queue one request's part for the next script call; parts queued together keep
        their order."""
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._waiting = []  # anything left belongs to a loop that is gone
            self._flusher = loop.create_task(self._flush())
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((group, blobs, future))
        return future

    async def _flush(self) -> None:
        """Send what is waiting, one script call at a time, until nothing is."""
        while self._waiting:
            batch = self._waiting[:MAX_GROUPS_PER_CALL]
            del self._waiting[:MAX_GROUPS_PER_CALL]
            payload = orjson.dumps({**self.request, "groups": [group for group, _, _ in batch]})
            args = [payload]
            for _, blobs, _ in batch:
                args.extend(blobs)
            try:
                async with guarded("storing events"):
                    replies, confirmed = await self._store(args)
            except Exception as exc:  # every waiting request hears it (503 or the error)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled with the loop: nobody is left to answer
                for _, _, future in batch:
                    future.cancel()
                raise
            short = confirmed < self.min_replicas
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if short and head(reply) != "conflict":  # a conflict wrote nothing
                    future.set_exception(self._short_of_replicas(confirmed))
                else:
                    future.set_result(reply)

    async def _store(self, args: list[bytes]) -> tuple[list[Any], int]:
        """Run the acceptance script; with ``min_replicas``, then ``WAIT`` on the same
        connection (WAIT counts the replicas that have this connection's writes): on a
        cluster, sent to the node that holds the partition's slot, whose connection ran the
        script in the same pipeline."""
        if not self.min_replicas:
            return await self.script(keys=self.script_keys, args=args), 0
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self.script.sha, len(self.script_keys), *self.script_keys, *args)
                if isinstance(self.redis, aiocluster.RedisCluster):
                    node = self.redis.get_node_from_key(self.space.SEQUENCE)
                    pipe.execute_command(
                        "WAIT", self.min_replicas, self.replica_timeout_ms, target_nodes=node
                    )
                else:
                    pipe.wait(self.min_replicas, self.replica_timeout_ms)
                replies, confirmed = await pipe.execute(raise_on_error=False)
            if isinstance(replies, NoScriptError):  # a fresh primary (after a failover, say)
                await self.redis.script_load(self.script.script)
                continue
            if isinstance(replies, BaseException):
                raise replies
            if isinstance(confirmed, ResponseError):
                # "WAIT cannot be used with replica instances": this server was demoted while
                # the script ran (a failover under way); the client finds the new primary.
                raise StoreUnavailable(
                    f"the Redis server stopped being the primary ({confirmed}); retry",
                    retry_after=1,
                ) from confirmed
            if isinstance(confirmed, BaseException):
                raise confirmed
            return replies, int(confirmed)
        raise StoreUnavailable("Redis lost the acceptance script twice; retry", retry_after=1)

    def _short_of_replicas(self, confirmed: int) -> StoreUnavailable:
        return StoreUnavailable(
            f"the event is stored on the Redis primary, but {confirmed} of the"
            f" {self.min_replicas} replicas INCIDENTS_MIN_REPLICAS asks for confirmed it within"
            f" {self.replica_timeout_ms} ms; retry (a retry is answered 200 as a duplicate)",
            retry_after=1,
        )


def head(reply: list[Any]) -> str:
    return reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
