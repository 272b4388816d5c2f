"""Redis connections, and the one boundary where Redis errors become gateway errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from incidents.errors import StoreUnavailable

# Errors that mean "Redis cannot be reached or answered too late": the request may be retried.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    ConnectionError,
    OSError,
)


def connect_async(url: str) -> aioredis.Redis:
    # Short timeouts: a producer gets a 503 with Retry-After rather than a hang.
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        # Without this, a connection broken by a Redis restart fails the next command instead
        # of reconnecting. Re-running the accept script is safe: it deduplicates.
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        health_check_interval=10,
        decode_responses=False,
    )


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        health_check_interval=10,
    )


@asynccontextmanager
async def guarded(action: str) -> AsyncIterator[None]:
    """Turn Redis being unreachable into ``StoreUnavailable`` (503 with Retry-After)."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"Redis is unavailable while {action}; nothing was stored, retry later",
            retry_after=2,
        ) from exc


@contextmanager
def guarded_sync(action: str) -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"Redis is unavailable while {action}", retry_after=2) from exc
