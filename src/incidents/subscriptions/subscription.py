"""Subscriptions: the stored model, the store, the routing index and the workers' cache.

Storage (hash ``incidents:sub:<id>``): ``spec`` (JSON of the Spec), ``owner``, ``status``,
``reason``, ``secrets`` (JSON list of [secret, valid-until or null], newest first), ``rate``
(deliveries per minute granted by the handshake; empty for none), ``origin`` (the
WebHook-Request-Origin the sink granted in that handshake; empty for none), ``created_at``,
``updated_at``, ``failing_since`` (unix time of the first failure since the last success).
Only this module writes those fields. Channel state (``incidents:sub:<id>:channels``, one
field per incident) and the attempt log are written by the lanes with each lane's completion,
in every partition, and dropped here with the subscription, from every partition.

The routing index keeps, per exact type, per type prefix and for "every type", the set of
subscription ids, so routing an event reads a few small sets rather than every subscription.
Every change bumps ``incidents:subs:version``; workers drop their cache when it moves.

The secrets in ``formatsettings`` are stored sealed (``secret_fields.py``), and so
are the signing secrets when a key is set (``signing_secrets.py``); the set
``incidents:subs:sealed`` holds the ids of the subscriptions that hold one, so ``serve`` and
``worker`` can refuse to start without the key that opens them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from incidents.model.cloudevent import AttributeValue, CloudEvent
from incidents.model.filters import Filter
from incidents.model.sql_filter import SqlFailure
from incidents.model.type_patterns import any_type_matches
from incidents.store import keys
from incidents.store.redis import guarded
from incidents.store.scripts import load_script
from incidents.store.secret_box import is_sealed
from incidents.subscriptions.secret_fields import holds_sealed
from incidents.subscriptions.signing import new_secret
from incidents.subscriptions.spec import Spec, SubscriptionStatus


@dataclass(frozen=True)
class Secret:
    value: str
    until: float | None = None  # None: current; else signs until this unix time (grace)


@dataclass(frozen=True)
class Subscription:
    id: str
    owner: str
    spec: Spec
    secrets: tuple[Secret, ...]
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    reason: str = ""
    rate: int | None = None
    origin: str | None = None  # WebHook-Request-Origin of the granted handshake, if any
    created_at: str = ""
    updated_at: str = ""
    filter: Filter = field(init=False, repr=False, compare=False)
    _decide: Callable[[Mapping[str, AttributeValue]], bool | SqlFailure] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        compiled = self.spec.compiled()
        object.__setattr__(self, "filter", compiled)
        object.__setattr__(self, "_decide", compiled.decide)

    @property
    def active(self) -> bool:
        return self.status == SubscriptionStatus.ACTIVE

    @property
    def channel(self) -> str:
        """The name of the delivery channel that carries this subscription's events: its
        ``format`` (``formats``)."""
        return self.spec.format

    def signing_secrets(self, now: float) -> list[str]:
        return [s.value for s in self.secrets if s.until is None or s.until > now]

    def matches(self, event: CloudEvent) -> bool:
        """Types (exact or prefix*), source and filters: what the subscriber asked for."""
        if self.spec.types and not any_type_matches(self.spec.types, event.type):
            return False
        if self.spec.source is not None and event.source != self.spec.source:
            return False
        return self.filter.matches(event.attributes)

    def decide(self, event: CloudEvent) -> bool | SqlFailure:
        """``matches`` from the same one evaluation, but an ``SqlFailure`` instead of False
        when the filters fail because an ``sql`` expression met an evaluation error (other
        than an attribute the event lacks): what routing asks."""
        if self.spec.types and not any_type_matches(self.spec.types, event.type):
            return False
        if self.spec.source is not None and event.source != self.spec.source:
            return False
        return self._decide(event.attributes)

    def to_dict(self) -> dict[str, object]:
        """As every read shows it (the secrets in ``formatsettings`` as ``***``)."""
        out: dict[str, object] = {"id": self.id, **self.spec.shown()}
        out.update(
            status=self.status,
            reason=self.reason or None,
            owner=self.owner,
            rate=self.rate,
            origin=self.origin,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )
        return out

    def fields(self) -> dict[str, str]:
        return {
            "spec": orjson.dumps(self.spec.to_dict()).decode(),
            "owner": self.owner,
            "status": str(self.status),
            "reason": self.reason,
            "secrets": orjson.dumps([[s.value, s.until] for s in self.secrets]).decode(),
            "rate": "" if self.rate is None else str(self.rate),
            "origin": self.origin or "",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_fields(cls, sub_id: str, raw: Mapping[bytes, bytes]) -> Subscription:
        f = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            id=sub_id,
            owner=f["owner"],
            spec=Spec.from_dict(orjson.loads(f["spec"])),
            secrets=tuple(Secret(v, u) for v, u in orjson.loads(f["secrets"])),
            status=SubscriptionStatus(f.get("status", SubscriptionStatus.ACTIVE)),
            reason=f.get("reason", ""),
            rate=int(f["rate"]) if f.get("rate") else None,
            origin=f.get("origin") or None,
            created_at=f.get("created_at", ""),
            updated_at=f.get("updated_at", ""),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_subscription(
    spec: Spec,
    owner: str,
    now: datetime,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
) -> Subscription:
    stamp = now.isoformat()
    return Subscription(
        id="sub_" + secrets.token_hex(8),
        owner=owner,
        spec=spec,
        secrets=(Secret(new_secret()),),
        status=status,
        created_at=stamp,
        updated_at=stamp,
    )


def _types_json(sub: Subscription | None) -> bytes:
    return orjson.dumps(None if sub is None else list(sub.spec.types))


class SubscriptionStore:
    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.redis = redis
        self.layout = layout  # whose partitions hold the subscription's logs and channel state
        self._index = redis.register_script(load_script("index"))

    async def save(self, sub: Subscription, previous: Subscription | None = None) -> None:
        """Write the subscription and move it in the routing index (create or update); one
        made active again starts with a clean failure record."""
        async with guarded("saving a subscription"):
            await self._load_index()
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(keys.subscription(sub.id), mapping=cast(Any, sub.fields()))
            if previous is not None and not previous.active and sub.active:
                pipe.hdel(keys.subscription(sub.id), "failing_since")
            pipe.sadd(keys.SUBSCRIPTIONS, sub.id)
            pipe.sadd(keys.owned_by(sub.owner), sub.id)
            if holds_sealed(sub.spec.formatsettings) or any(
                is_sealed(s.value) for s in sub.secrets
            ):
                pipe.sadd(keys.SUBSCRIPTIONS_SEALED, sub.id)
            else:
                pipe.srem(keys.SUBSCRIPTIONS_SEALED, sub.id)
            await self._index(
                keys=[keys.ROUTE_ANY_TYPE],
                args=[sub.id, keys.GLOBAL_PREFIX, _types_json(previous), _types_json(sub)],
                client=pipe,
            )
            await pipe.execute()

    async def delete(self, sub: Subscription) -> None:
        """Delete the subscription, its routing index entries and what is kept for it; the
        deliveries still in its lanes are dropped as the lanes reach them. With a tagged
        layout its attempt logs and channel state are deleted from every partition after the
        subscription is gone (a key each: no step spans partitions)."""
        tagged = self.layout.tagged
        async with guarded("deleting a subscription"):
            await self._load_index()
            pipe = self.redis.pipeline(transaction=True)
            kept = [] if tagged else [keys.attempts(sub.id), keys.channel_state(sub.id)]
            pipe.delete(
                keys.subscription(sub.id),
                *kept,
                keys.sync_seen(sub.id),
                keys.sync_records(sub.id),
            )
            pipe.srem(keys.SUBSCRIPTIONS, sub.id)
            pipe.srem(keys.owned_by(sub.owner), sub.id)
            pipe.srem(keys.SUBSCRIPTIONS_SEALED, sub.id)
            await self._index(
                keys=[keys.ROUTE_ANY_TYPE],
                args=[sub.id, keys.GLOBAL_PREFIX, _types_json(sub), b"null"],
                client=pipe,
            )
            await pipe.execute()
            if tagged:
                pipe = self.redis.pipeline(transaction=False)
                for space in self.layout:
                    pipe.delete(space.attempts(sub.id))
                    pipe.delete(space.channel_state(sub.id))
                await pipe.execute()

    async def _load_index(self) -> None:
        """A cluster's pipelines do not load the scripts queued on them: load the routing
        index's on every primary first (a subscription changes seldom)."""
        if isinstance(self.redis, aioredis.RedisCluster):
            await self.redis.script_load(self._index.script)

    async def holding_secrets(self) -> int:
        """How many subscriptions hold a sealed secret (which only the key opens)."""
        async with guarded("counting stored secrets"):
            return int(await self.redis.scard(keys.SUBSCRIPTIONS_SEALED))

    async def get(self, sub_id: str) -> Subscription | None:
        found = await self.get_many([sub_id])
        return found.get(sub_id)

    async def get_many(self, ids: Iterable[str]) -> dict[str, Subscription]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        async with guarded("reading subscriptions"):
            pipe = self.redis.pipeline(transaction=False)
            for i in wanted:
                pipe.hgetall(keys.subscription(i))
            rows = await pipe.execute()
        return {
            i: Subscription.from_fields(i, r)
            for i, r in zip(wanted, rows, strict=True)
            if b"owner" in r
        }

    async def list(self, owner: str | None) -> list[Subscription]:
        key = keys.SUBSCRIPTIONS if owner is None else keys.owned_by(owner)
        async with guarded("listing subscriptions"):
            ids = sorted(_text(m) for m in await self.redis.smembers(key))
        found = await self.get_many(ids)
        return [found[i] for i in ids if i in found]

    async def set_status(
        self, sub_id: str, status: SubscriptionStatus, reason: str, now: datetime
    ) -> None:
        async with guarded("changing a subscription's status"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(
                keys.subscription(sub_id),
                mapping={"status": str(status), "reason": reason, "updated_at": now.isoformat()},
            )
            if status == SubscriptionStatus.ACTIVE:
                pipe.hdel(keys.subscription(sub_id), "failing_since")
            pipe.incr(keys.SUBSCRIPTIONS_VERSION)
            await pipe.execute()

    async def note_failure(self, sub_id: str, now: float) -> float | None:
        """Record that a delivery to the subscription failed at ``now``; the unix time of its
        first failure since its last success (None if the subscription is gone). A success
        clears it (``DeliveryStore.complete``), as does making the subscription active again."""
        key = keys.subscription(sub_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(key, "failing_since", repr(now))
        pipe.hget(key, "failing_since")
        _, since = await pipe.execute()
        return None if since is None else float(since)

    async def candidates(self, event_types: Sequence[str]) -> dict[str, set[str]]:
        """Per event type, the ids of subscriptions whose types admit it (from the index)."""
        if not event_types:
            return {}
        async with guarded("reading the routing index"):
            prefixes = [_text(p) for p in await self.redis.smembers(keys.ROUTE_PREFIXES)]
            wanted = [
                [keys.route_exact(t), keys.ROUTE_ANY_TYPE]
                + [keys.route_prefix(p) for p in prefixes if t.startswith(p)]
                for t in event_types
            ]
            pipe = self.redis.pipeline(transaction=False)
            if isinstance(self.redis, aioredis.RedisCluster):
                # A cluster's pipelines take no multi-key command: each set, united here.
                for sets in wanted:
                    for key in sets:
                        pipe.smembers(key)
                found = iter(await pipe.execute())
                rows = [set().union(*(next(found) for _ in sets)) for sets in wanted]
            else:
                for sets in wanted:
                    pipe.sunion(sets)
                rows = await pipe.execute()
        return {t: {m.decode() for m in r} for t, r in zip(event_types, rows, strict=True)}

    async def version(self) -> bytes:
        async with guarded("reading the subscriptions version"):
            raw = await self.redis.get(keys.SUBSCRIPTIONS_VERSION)
        return cast(bytes, raw) if raw else b"0"


@dataclass(frozen=True, slots=True)
class Routing:
    """One event's active subscriptions that want it, and those whose ``sql`` filter failed
    on it with an evaluation error (not sent; their delivery log names the failure)."""

    matched: list[Subscription]
    failed: list[tuple[Subscription, SqlFailure]]


class SubscriptionCache:
    """A worker's view of subscriptions, dropped whenever the version counter moves."""

    def __init__(self) -> None:
        self._version: bytes | None = None
        self._subs: dict[str, Subscription | None] = {}
        self._types: dict[str, set[str]] = {}

    async def sync(self, store: SubscriptionStore) -> None:
        self.observe(await store.version())

    def observe(self, version: bytes | str | None) -> None:
        """Drop what is held if the subscriptions changed since it was read (``version``: the
        value of ``keys.SUBSCRIPTIONS_VERSION``, read along with other work)."""
        version = (version.encode() if isinstance(version, str) else version) or b"0"
        if version != self._version:
            self._version = version
            self._subs.clear()
            self._types.clear()

    @property
    def loaded(self) -> int:
        """How many subscriptions are held (read from Redis since the last change)."""
        return len(self._subs)

    async def subscriptions(
        self, store: SubscriptionStore, ids: Iterable[str]
    ) -> dict[str, Subscription]:
        wanted = list(dict.fromkeys(ids))
        missing = [i for i in wanted if i not in self._subs]
        if missing:
            found = await store.get_many(missing)
            for i in missing:
                self._subs[i] = found.get(i)
        return {i: s for i in wanted if (s := self._subs.get(i)) is not None}

    async def matching(
        self, store: SubscriptionStore, events: Sequence[CloudEvent]
    ) -> list[Routing]:
        """For each event, the active subscriptions that want it (and those whose ``sql``
        filter failed on it with an error), each judged in one evaluation."""
        unknown = sorted({e.type for e in events} - self._types.keys())
        self._types.update(await store.candidates(unknown))
        subs = await self.subscriptions(store, {i for e in events for i in self._types[e.type]})
        out = []
        for e in events:
            matched: list[Subscription] = []
            failed: list[tuple[Subscription, SqlFailure]] = []
            for i in sorted(self._types[e.type]):
                s = subs.get(i)
                if s is None or not s.active:
                    continue
                found = s.decide(e)
                if found is True:
                    matched.append(s)
                elif found is not False:
                    failed.append((s, found))
            out.append(Routing(matched, failed))
        return out


# Previous secrets a subscription keeps signing with at most, however often it is rotated
# within the grace: each one is a signature more on every delivery.
MAX_PREVIOUS_SECRETS = 8


def rotated(sub: Subscription, now: float, grace: float, stamp: str) -> Subscription:
    """The subscription with a new current secret; older ones sign until ``now + grace``, the
    ``MAX_PREVIOUS_SECRETS`` most recent of them (a rotation beyond that ends the oldest's
    grace early)."""
    kept = tuple(
        Secret(s.value, now + grace if s.until is None else s.until)
        for s in sub.secrets
        if s.until is None or s.until > now
    )[:MAX_PREVIOUS_SECRETS]
    return replace(sub, secrets=(Secret(new_secret()), *kept), updated_at=stamp)
