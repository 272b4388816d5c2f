"""Silences in Redis, and the workers' cache of them.

Storage: ``incidents:silence:<id>`` holds a silence's JSON; the sorted set
``incidents:silences`` holds every id, scored by when it ends, so the silences still to
come or running are one range read; one that ended more than 30 days ago is dropped when the
next silence is saved. Every change bumps ``incidents:silences:version``: a
worker reads that counter with the work it does anyway (in the same round trip) and reloads
its silences only when it moved, so checking a delivery costs no Redis call at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import cast

import orjson
import redis.asyncio as aioredis

from incidents.model.cloudevent import AttributeValue
from incidents.silences.silence import FOREVER, Silence, SilenceState
from incidents.store import keys
from incidents.store.redis import guarded

EXPIRED_KEPT = timedelta(days=30)  # how long an ended silence stays listed


def _decode(raw: bytes | None) -> Silence | None:
    return Silence.from_dict(orjson.loads(raw)) if raw else None


class SilenceStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def save(self, silence: Silence, now: datetime) -> None:
        """Write a new or changed silence (and tell the workers); silences that ended more
        than ``EXPIRED_KEPT`` before ``now`` are dropped on the way."""
        async with guarded("saving a silence"):
            cutoff = (now - EXPIRED_KEPT).timestamp()
            old = await self.redis.zrangebyscore(keys.SILENCES, "-inf", f"({cutoff!r}")
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(keys.silence(silence.id), orjson.dumps(silence.to_dict()))
            pipe.zadd(keys.SILENCES, {silence.id: silence.ends_at.timestamp()})
            if old:
                gone = [cast(bytes, i).decode() for i in old]
                pipe.delete(*(keys.silence(i) for i in gone))
                pipe.zrem(keys.SILENCES, *gone)
            pipe.incr(keys.SILENCES_VERSION)
            await pipe.execute()

    async def get(self, silence_id: str) -> Silence | None:
        async with guarded("reading a silence"):
            raw = await self.redis.get(keys.silence(silence_id))
        return _decode(cast(bytes | None, raw))

    async def get_many(self, ids: Sequence[str]) -> list[Silence]:
        if not ids:
            return []
        async with guarded("reading silences"):
            raws = await self.redis.mget([keys.silence(i) for i in ids])
        found = (_decode(cast(bytes | None, raw)) for raw in raws)
        return [s for s in found if s is not None]

    async def running(self, at: datetime) -> int:
        """How many silences have not ended at ``at``."""
        async with guarded("counting silences"):
            return int(await self.redis.zcount(keys.SILENCES, f"({at.timestamp()!r}", "+inf"))

    async def list(self, after: datetime | None = None, limit: int | None = None) -> list[Silence]:
        """Silences, those ending last first; with ``after``, only those not ended by then
        (at most ``INCIDENTS_MAX_SILENCES`` of them)."""
        low = "-inf" if after is None else f"({after.timestamp()!r}"
        start, num = (None, None) if limit is None else (0, limit)
        async with guarded("listing silences"):
            ids = await self.redis.zrevrangebyscore(keys.SILENCES, "+inf", low, start, num)
        return await self.get_many([cast(bytes, i).decode() for i in ids])

    async def version(self) -> bytes | None:
        async with guarded("reading the silences version"):
            return cast(bytes | None, await self.redis.get(keys.SILENCES_VERSION))


class SilenceCache:
    """A worker's silences that have not ended, reloaded only when the version counter moved
    (``observe``, with a value read along with other work). Kept by the worker across jobs,
    as its subscriptions are.

    The active ones are worked out once and kept until the first time any silence starts,
    ends, or opens or closes a weekly window: a delivery is matched against the silences
    active now only (most of the time none), never against every one."""

    def __init__(self) -> None:
        self._version: bytes | None = None
        self._silences: list[Silence] | None = None
        # The active silences, by id: those of every subscription, and those that name
        # subscriptions under each one they name; and the span of time this holds for.
        self._everyone: list[Silence] = []
        self._named: dict[str, list[Silence]] = {}
        self._active_span: tuple[datetime, datetime] | None = None

    def observe(self, version: bytes | str | None) -> None:
        version = (version.encode() if isinstance(version, str) else version) or b"0"
        if version != self._version:
            self._version = version
            self._silences = None
            self._active_span = None

    async def current(self, store: SilenceStore, at: datetime) -> list[Silence]:
        """The silences not ended at ``at`` (loaded when the cache was dropped)."""
        if self._silences is None:
            self._silences = await store.list(after=at)
        return self._silences

    async def _activate(self, store: SilenceStore, at: datetime) -> None:
        """Work out the active silences, unless those worked out still hold at ``at``."""
        span = self._active_span
        if span is not None and span[0] <= at < span[1]:
            return
        loaded = await self.current(store, at)
        active = sorted((s for s in loaded if s.state(at) is SilenceState.ACTIVE), key=_by_id)
        self._everyone = [s for s in active if not s.subscriptions]
        self._named = {}
        for silence in active:
            for sub_id in silence.subscriptions:
                self._named.setdefault(sub_id, []).append(silence)
        self._active_span = (at, min((s.next_change(at) for s in loaded), default=FOREVER))

    async def holding(
        self,
        store: SilenceStore,
        sub_id: str,
        attributes: Mapping[str, AttributeValue],
        at: datetime,
    ) -> Silence | None:
        """The first silence (by id) that holds this delivery at ``at``, if any: only the
        silences active now that cover ``sub_id`` are matched."""
        await self._activate(store, at)
        found = [
            next((s for s in candidates if s.filter.matches(attributes)), None)
            for candidates in (self._everyone, self._named.get(sub_id, ()))
        ]
        return min((s for s in found if s is not None), key=_by_id, default=None)


def _by_id(silence: Silence) -> str:
    return silence.id
