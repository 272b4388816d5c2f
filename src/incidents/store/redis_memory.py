"""Redis's memory as the gateway needs it: never evicting, and saying when it is full.

Everything the gateway answered ``202`` for lives in Redis, so Redis must never drop a key to
make room: ``maxmemory-policy`` must be ``noeviction``. ``serve``, ``worker`` and ``dev`` check
it at start-up (:func:`check_eviction_policy`) and refuse any other policy. A Redis that
forbids ``CONFIG`` (managed offerings often rename it) cannot be checked: that is a warning.

Under ``noeviction`` a Redis at ``maxmemory`` refuses writes with ``OOM`` (``store/redis.py``
turns that into ``503`` ``redis-full``). :func:`refuses_writes` asks it with a write that
changes nothing, for ``/readyz``, ``/metrics`` and a worker waiting for room. Redis counts a
command's own arguments when it decides, so the probe carries ``PROBE_BYTES``, about an
event's size: a Redis with less room than that refuses events, and the probe with them. On a
Redis Cluster each primary is asked (any one full refuses the events of its partitions), with
a probe key of its own slot on each (:func:`probe_keys`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis

from incidents.store import keys
from incidents.store.redis import FULL
from incidents.store.redis_cluster import is_cluster_client

POLICY_SETTING = "maxmemory-policy"
REQUIRED_POLICY = "noeviction"
PROBE_BYTES = 4096
_PROBE = b"x" * PROBE_BYTES


class EvictionPolicyRefused(Exception):
    """Redis may evict keys; the message names the setting, the value found and why not."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_eviction_policy(connection: redis.Redis) -> str | None:
    """None when Redis's ``maxmemory-policy`` is ``noeviction``; a warning to log when it
    cannot be read (``CONFIG`` disabled or renamed, or not allowed to this user). Raises
    EvictionPolicyRefused for any other policy, and Redis's own error when it cannot be
    reached."""
    try:
        found = connection.config_get(POLICY_SETTING)
    except redis.exceptions.ResponseError as exc:  # unknown command, NOPERM, ...
        return (
            f"cannot check Redis's {POLICY_SETTING} ({exc}): it must be {REQUIRED_POLICY}, or"
            " Redis may evict stored events when it fills up; make sure it is"
        )
    policy = _text(
        next((v for k, v in found.items() if _text(k) == POLICY_SETTING), "(not reported)")
    )
    if policy != REQUIRED_POLICY:
        raise EvictionPolicyRefused(
            f"Redis's {POLICY_SETTING} is {policy!r}; it must be {REQUIRED_POLICY!r}. Under"
            " any other policy Redis evicts keys when it reaches maxmemory, and would silently"
            " lose accepted events, their deliveries and delivery state. Set"
            f" `{POLICY_SETTING} {REQUIRED_POLICY}` in the Redis configuration (or"
            f" `CONFIG SET {POLICY_SETTING} {REQUIRED_POLICY}`) and give Redis room with"
            " maxmemory"
        )
    return None


def probe_keys(connection: redis.Redis | aioredis.Redis) -> list[str]:
    """The keys the write probe is sent to: ``keys.WRITE_PROBE`` on one Redis; on a cluster,
    one key per primary, each with a hash tag (``{w<n>}``) of a slot that primary serves."""
    if not is_cluster_client(connection):
        return [keys.WRITE_PROBE]
    cluster: Any = connection
    wanted = {node.name for node in cluster.get_primaries()}
    found: dict[str, str] = {}
    for n in range(1 << 16):  # a slot of each of a few primaries comes within a few tries
        if set(found) >= wanted:
            break
        key = f"{keys.PREFIX}{{w{n}}}:write-probe"
        found.setdefault(cluster.get_node_from_key(key).name, key)
    return list(found.values())


def refuses_writes(connection: redis.Redis) -> bool:
    """Whether Redis (any primary of a cluster) is full: it refuses a write (which would
    change nothing) with OOM."""
    for key in probe_keys(connection):
        try:
            connection.set(key, _PROBE, xx=True)
        except FULL:
            return True
    return False


async def refuses_writes_async(connection: aioredis.Redis) -> bool:
    """As :func:`refuses_writes`, on the asyncio client (every primary asked at once)."""

    async def refused(key: str) -> bool:
        try:
            await connection.set(key, _PROBE, xx=True)
        except FULL:
            return True
        return False

    if is_cluster_client(connection):
        await connection.initialize()  # the cluster's: it reads the slots (once)
    return any(await asyncio.gather(*(refused(k) for k in probe_keys(connection))))
