"""Redis's memory as the gateway needs it: never evicting, and saying when it is full.

Everything the gateway answered ``202`` for lives in Redis, so Redis must never drop a key to
make room: ``maxmemory-policy`` must be ``noeviction``. ``serve``, ``worker`` and ``dev`` check
it at start-up (:func:`check_eviction_policy`) and refuse any other policy. A Redis that
forbids ``CONFIG`` (managed offerings often rename it) cannot be checked: that is a warning.

Under ``noeviction`` a Redis at ``maxmemory`` refuses writes with ``OOM`` (``store/redis.py``
turns that into ``503`` ``redis-full``). :func:`refuses_writes` asks it with a write that
changes nothing, for ``/readyz``, ``/metrics`` and a worker waiting for room. Redis counts a
command's own arguments when it decides, so the probe carries ``PROBE_BYTES``, about an
event's size: a Redis with less room than that refuses events, and the probe with them.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from incidents.store import keys
from incidents.store.redis import FULL

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


def refuses_writes(connection: redis.Redis) -> bool:
    """Whether Redis is full: it refuses a write (which would change nothing) with OOM."""
    try:
        connection.set(keys.WRITE_PROBE, _PROBE, xx=True)
    except FULL:
        return True
    return False


async def refuses_writes_async(connection: aioredis.Redis) -> bool:
    """As :func:`refuses_writes`, on the asyncio client."""
    try:
        await connection.set(keys.WRITE_PROBE, _PROBE, xx=True)
    except FULL:
        return True
    return False
