"""Consumer groups on Redis streams, as the router reads the outbox and the dispatchers read
the lanes' wake stream: a group made when it is missing, and the errors that say its stream
was deleted under a reader."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError


def stream_gone(exc: ResponseError) -> bool:
    """Whether a stream read failed because the stream (and so its group) was deleted: NOGROUP
    on the next read, or, from Redis 7, UNBLOCKED for a read blocked when it went."""
    text = str(exc)
    return "NOGROUP" in text or "UNBLOCKED" in text


async def ensure_stream_group(redis: aioredis.Redis, stream: str, group: str, start: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) reading from ``start``, unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
