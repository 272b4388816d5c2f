"""Redis connections, and the one boundary where Redis errors become gateway errors.

``INCIDENTS_REDIS_URL`` names one Redis (``redis://``, ``rediss://``, ``unix://``), a primary
found through Sentinel: ``redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]``,
or a Redis Cluster: ``redis+cluster://host:port[,host:port...]`` (``store/redis_cluster.py``).
Every client built here asks the sentinels for the primary on each new connection, so after a
failover the next command reaches the new primary by itself; until then commands fail with
connection errors, which :func:`guarded` turns into ``503`` with ``Retry-After``. So does a
Redis at ``maxmemory`` refusing a write (``OOM``): ``503`` ``redis-full``, nothing stored.

It asks every sentinel, not the first that answers, and follows the one whose configuration
is newest (the highest ``config-epoch``): a sentinel that has not heard of a failover yet still
names the old primary, and an old primary restarted by a restart policy answers as a primary
until the sentinels demote it. Whatever it accepted then is thrown away when it rejoins as a
replica; following a stale sentinel there would split the writes between two primaries.

A client also asks again, at most once a second, while it keeps its connections: a connection
made to a primary stays open when the sentinels stop naming it, and one that only reads (a
worker looking for work, say) would never hear the ``READONLY`` that ends it, reading a
demoted server's copy while nothing moves. Once the sentinels name another primary, idle
connections close at once and busy ones when handed back, and the next command reaches the
new primary.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from incidents.errors import RedisFull, StoreUnavailable
from incidents.store import keys
from incidents.store.redis_cluster import (
    ClusterTarget,
    connect_cluster,
    connect_cluster_async,
    is_cluster_client,
    is_cluster_url,
)

SENTINEL_SCHEME = "redis+sentinel://"
# Errors that mean "Redis cannot be reached or answered too late": the request may be retried.
# MasterNotFoundError (no sentinel names a primary yet: a failover is under way) is a
# ConnectionError, and so is the error a client gets from a primary demoted to a replica. On
# a cluster: a slot without a primary while a replica takes over (CLUSTERDOWN, TRYAGAIN, or a
# slot the client's map does not cover yet), or no node reachable at all.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
    ConnectionError,
    OSError,
)
# Redis reached ``maxmemory`` and refuses every command that could add data (``OOM``). A
# refused command wrote nothing; so did a refused script, which Redis refuses at its first
# write or not at all, and a refused MULTI (EXECABORT). See :func:`is_full` for the rest.
FULL: tuple[type[BaseException], ...] = (redis.exceptions.OutOfMemoryError,)
FULL_REASON = (
    "Redis is full: it reached maxmemory and refuses writes until an operator makes room"
    " (raises maxmemory or frees memory)"
)
FULL_RETRY_AFTER = 10
_RETRY_ON = [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
FOLLOW_EVERY = 1.0  # seconds between two checks that the sentinels still name the same primary


@dataclass(frozen=True)
class SentinelTarget:
    """A ``redis+sentinel://`` URL, parsed: where the sentinels are and what to ask them."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    password: str | None = None  # the primary's (and its replicas'); sentinels take none

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        """Raises ValueError with a message that quotes the bad part."""
        rest = url.removeprefix(SENTINEL_SCHEME)
        password = None
        if "@" in rest:
            auth, rest = rest.rsplit("@", 1)
            password = unquote(auth.split(":", 1)[1] if ":" in auth else auth) or None
        hosts, _, path = rest.partition("/")
        sentinels = []
        for part in hosts.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{part!r} in {_masked(url)!r} is not host:port")
            sentinels.append((host.strip("[]"), int(port)))
        names = [p for p in path.split("/") if p]
        if not names or len(names) > 2:
            raise ValueError(
                f"{_masked(url)!r} must end in /<service name> or /<service name>/<db>"
            )
        if len(names) == 2 and not names[1].isdigit():
            raise ValueError(f"database {names[1]!r} in {_masked(url)!r} is not a number")
        db = int(names[1]) if len(names) == 2 else 0
        return cls(tuple(sentinels), unquote(names[0]), db, password)


def _masked(url: str) -> str:
    if "@" not in url:
        return url
    head, tail = url.rsplit("@", 1)
    return head.split("//", 1)[0] + "//***@" + tail


_PASSWORD_PARAM = re.compile(r"(?<=[?&])password=[^&]*&?")


def without_password(url: str) -> str:
    """``url`` without its password (``redis://user:pw@host`` or ``?password=pw``): what may
    be stored or shown; it reaches only a Redis that asks for none."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    location, tail = rest[:cut], rest[cut:]
    if "@" in location:
        auth, host = location.rsplit("@", 1)
        user = auth.split(":", 1)[0]
        location = f"{user}@{host}" if user else host
    tail = _PASSWORD_PARAM.sub("", tail).rstrip("?&")
    return f"{scheme}{sep}{location}{tail}"


def check_url(url: str) -> str:
    """``url`` unchanged if a client can be built from it; else ValueError naming the fault."""
    if url.startswith(SENTINEL_SCHEME):
        SentinelTarget.parse(url)
    elif is_cluster_url(url):
        ClusterTarget.parse(url)
    return url


def _sentinel_options(target: SentinelTarget, socket_timeout: float) -> dict[str, Any]:
    return {
        "sentinel_kwargs": {"socket_connect_timeout": 1, "socket_timeout": 1},
        "db": target.db,
        "password": target.password,
        "socket_connect_timeout": 2,
        "socket_timeout": socket_timeout,
    }


def _newest(
    service: str, answers: list[Any], check: Any, force_ip: str | None
) -> tuple[str, int] | None:
    """Of the sentinels' ``SENTINEL MASTERS`` replies (an exception for one that did not
    answer), the primary named by the newest configuration among those that see it up."""
    best: tuple[int, str, int] | None = None
    for masters in answers:
        state = None if isinstance(masters, BaseException) else masters.get(service)
        if state and check(state, service):
            epoch = int(state.get("config-epoch", 0))
            if best is None or epoch > best[0]:
                best = (epoch, force_ip or state["ip"], int(state["port"]))
    return None if best is None else (best[1], best[2])


def _not_found(service: str, answers: list[Any]) -> redis.sentinel.MasterNotFoundError:
    errors = ", ".join(repr(a) for a in answers if isinstance(a, BaseException))
    return redis.sentinel.MasterNotFoundError(
        f"No master found for {service!r}" + (f" : {errors}" if errors else "")
    )


class _Sentinel(redis.sentinel.Sentinel):
    """Finds the primary named by the newest configuration among every sentinel's answer."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        answers: list[Any] = []
        for sentinel in self.sentinels:
            try:
                answers.append(sentinel.sentinel_masters())
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                answers.append(exc)
        found = _newest(service_name, answers, self.check_master_state, self._force_master_ip)
        if found is None:
            raise _not_found(service_name, answers)
        return found


class _AsyncSentinel(aiosentinel.Sentinel):
    """As :class:`_Sentinel`, asking the sentinels all at once."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        answers: list[Any] = await asyncio.gather(
            *(s.sentinel_masters() for s in self.sentinels), return_exceptions=True
        )
        for answer in answers:  # anything but "this sentinel cannot be reached" is a fault
            if isinstance(answer, BaseException) and not isinstance(
                answer, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
            ):
                raise answer
        found = _newest(service_name, answers, self.check_master_state, self._force_master_ip)
        if found is None:
            raise _not_found(service_name, answers)
        return found


class _Following:
    """When the primary's connections were last checked against the sentinels' answer."""

    _checked_at = 0.0

    def _due(self) -> bool:
        now = time.monotonic()
        if now < self._checked_at + FOLLOW_EVERY:
            return False
        self._checked_at = now
        return True


class _FollowingPool(_Following, redis.sentinel.SentinelConnectionPool):
    """Checks, at most once a second, that the sentinels still name the primary its
    connections reach; if not, redis-py's pool closes them (idle ones now, busy ones when
    handed back) and the next connection reaches the new primary."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and self.master_address is not None and self._due():
            # No sentinel answers: keep what there is (a dead primary fails by itself).
            with suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                self.get_master_address()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        return super().get_connection(*args, **kwargs)


class _AsyncFollowingPool(_Following, aiosentinel.SentinelConnectionPool):
    """As :class:`_FollowingPool`, for the asyncio client."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and self.master_address is not None and self._due():
            with suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                await self.get_master_address()  # type: ignore[no-untyped-call]  # as above
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]  # as above


class _BlockingSentinelPool(_AsyncFollowingPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that waits for a free connection instead of failing when all are busy."""


def name_keys_for(url: str | None) -> None:
    """Name the global keys for the deployment at ``url``: under ``{g}`` on a Redis Cluster,
    today's names on one Redis (``keys.use_cluster_names``). Every process calls it with its
    data Redis's URL before it names a global key: the API, the workers, the commands."""
    keys.use_cluster_names(url is not None and is_cluster_url(url.strip()))


def connect_async(url: str, *, max_connections: int | None = None) -> aioredis.Redis:
    """The asyncio client. ``max_connections``: at most that many, and a command waits (up to
    20 s) for a free one rather than failing: many delivery lanes share a few connections.

    For a cluster URL, redis-py's asyncio cluster client (``max_connections`` per node), typed
    as the single-Redis client whose commands it answers: a command or script on the keys of
    one slot runs as it does on one Redis."""
    if is_cluster_url(url):
        cluster = connect_cluster_async(ClusterTarget.parse(url), max_connections=max_connections)
        return cast(aioredis.Redis, cluster)
    # Short timeouts: a producer gets a 503 with Retry-After rather than a hang.
    options: dict[str, Any] = {
        "retry": AsyncRetry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        # Without this, a connection broken by a Redis restart fails the next command instead
        # of reconnecting. Re-running the accept script is safe: it deduplicates.
        "retry_on_error": _RETRY_ON,
        "health_check_interval": 10,
        "decode_responses": False,
    }
    blocking: dict[str, Any] = (
        {"max_connections": max_connections, "timeout": 20} if max_connections else {}
    )
    if url.startswith(SENTINEL_SCHEME):
        target = SentinelTarget.parse(url)
        manager = _AsyncSentinel(
            list(target.sentinels), **_sentinel_options(target, socket_timeout=5)
        )
        pool_class = _BlockingSentinelPool if max_connections else _AsyncFollowingPool
        found: aioredis.Redis = manager.master_for(
            target.service, connection_pool_class=pool_class, **options, **blocking
        )
        return found
    if max_connections:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, socket_connect_timeout=2, socket_timeout=10, **options, **blocking
        )
        return aioredis.Redis(connection_pool=pool)
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, **options)


async def close_async(client: aioredis.Redis) -> None:
    """Close an asyncio client of :func:`connect_async` and its connections (a cluster
    client's ``aclose`` closes them all and takes no argument)."""
    if is_cluster_client(client):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)


def connect(url: str) -> redis.Redis:
    """The blocking client (workers, RQ): follows a Sentinel failover like the asyncio one.
    For a cluster URL, redis-py's cluster client, typed as :func:`connect_async` says."""
    if is_cluster_url(url):
        return cast(redis.Redis, connect_cluster(ClusterTarget.parse(url)))
    options: dict[str, Any] = {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        "retry_on_error": _RETRY_ON,
        "health_check_interval": 10,
    }
    if url.startswith(SENTINEL_SCHEME):
        target = SentinelTarget.parse(url)
        manager = _Sentinel(list(target.sentinels), **_sentinel_options(target, socket_timeout=10))
        client: redis.Redis = manager.master_for(
            target.service, connection_pool_class=_FollowingPool, **options
        )
        return client
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, **options)


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a write for want of memory: an ``OOM`` reply, or the
    same refusal met inside a script, which Redis 6 reports as ``ERR Error running script
    ...: -OOM command not allowed ...``."""
    if isinstance(exc, FULL):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and "-OOM " in str(exc)


def full(action: str, exc: BaseException) -> RedisFull:
    """The error for a write Redis refused while ``action`` because it is full."""
    return RedisFull(
        f"{FULL_REASON}; nothing was stored while {action}, retry later",
        retry_after=FULL_RETRY_AFTER,
    )


@asynccontextmanager
async def guarded(action: str) -> AsyncIterator[None]:
    """Turn Redis being unreachable into ``StoreUnavailable``, and Redis refusing a write
    because it is full into ``RedisFull`` (both 503 with Retry-After)."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"Redis is unavailable while {action}; nothing was stored, retry later",
            retry_after=2,
        ) from exc
    except redis.exceptions.ResponseError as exc:
        if is_full(exc):
            raise full(action, exc) from exc
        raise


@contextmanager
def guarded_sync(action: str) -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"Redis is unavailable while {action}", retry_after=2) from exc
    except redis.exceptions.ResponseError as exc:
        if is_full(exc):
            raise full(action, exc) from exc
        raise
