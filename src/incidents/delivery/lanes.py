"""Delivery records, lanes and dead letters: the durable state of every delivery.

A delivery is one (event, subscription) pair, kept in ``incidents:deliveries:<bucket>`` (a
hash per 32 sequences of its partition, field: the delivery id; ``Delivery.encoded``) with its
attempt count and next attempt; its id is the ``webhook-id`` and stays the same across
retries. Deliveries wait in lanes: one lane per (subscription, incident), a sorted set
ordered by gateway sequence, so an event goes out only after every earlier event of its
incident has been delivered to that subscription or dead-lettered. Events without an
incident get a lane of their own and wait for nothing.

A worker leases a due lane, works its head in order, then hands it back due "now" (head
done) or at the head's retry time; when deliveries were queued behind the head meanwhile (a
busy incident), it keeps the lease and goes on with them instead, for a couple of seconds at
most, so a steady stream of events is not released and claimed again one by one. A lease
runs out a few seconds after its worker stops renewing it (killed, say) and the lane is due
again: delivery is at-least-once. Each lease carries a fencing token: a worker that stalled
past its lease can neither renew nor complete the lane once another has taken it, so the
lane's state only moves forward, in order.

Everything of a delivery lives in its event's partition (``keys.Keyspace``; the incident's, for
an event of an incident): its record, its lane, the due and leased lanes, the dead letters, and
what completing a lane writes (the attempt log, channel state, the incident's external
references, the delivery metrics), so each script runs on one slot. With more than one
partition the global keys a script used to touch beside them (the wake stream, the
subscriptions' and silences' versions, a sink's pause, a subscription's ``failing_since``)
are read and written next to the script instead; one partition on one Redis keeps today's
single script. A worker claims lanes from every partition, taking turns.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from incidents.connectors.channel_base import ChannelState
from incidents.delivery import delivery_metrics
from incidents.delivery.attempt_log import AttemptEntry
from incidents.store import keys
from incidents.store.redis import guarded
from incidents.store.scripts import load_script

LEASE_SECONDS = 6.0
CAPPED_DEFER_SECONDS = 0.25  # how far back a backlog of a subscription at its cap is put
CLAIM_SCAN_EXTRA = 512  # due lanes looked at per claim beyond those wanted (capped ones skipped)
LOG_LENGTH = 1000  # attempts kept per subscription
WAKE_KEEP = 100  # entries the wake stream is capped at (about)


class DeliveryState(StrEnum):
    """Where a delivery stands (its record's ``state``)."""

    PENDING = "pending"  # queued in its lane, not tried yet
    RETRYING = "retrying"  # failed; tried again at ``next_at``
    DELIVERED = "delivered"
    SKIPPED = "skipped"  # its channel had nothing to send for it (a note, for a pager)
    WITHHELD = "withheld"  # policy refused it for the subscription's owner
    DEAD = "dead"  # retries ran out (or it can never be sent): a dead letter
    SILENCED = "silenced"  # a silence held it: not sent (a replay after it sends the event)
    FILTER_ERROR = "filter_error"  # its sql filter failed on the event with an error: not sent


PENDING, RETRYING, DELIVERED, SKIPPED, WITHHELD, DEAD, SILENCED, FILTER_ERROR = DeliveryState


def routed_id(sequence: int, sub_id: str, source: str, event_id: str) -> str:
    """The delivery (and webhook) id of an event routed to a subscription: the same every
    time the event is routed, so routing an outbox entry twice queues it once. It names the
    event's (source, id) as well as its sequence: a failover that loses the last writes hands
    those sequences out again, and a subscriber deduplicating on webhook-id must not take a
    different event under a reused sequence for one it already has."""
    event = hashlib.blake2b(f"{source}\n{event_id}".encode(), digest_size=6).hexdigest()
    return f"msg_{sequence}_{event}_{sub_id.removeprefix('sub_')}"


def _lane_rest(lane: str) -> str:
    """A lane key after its partition's ``LANE_PREFIX``: ``<subscription>:{<incident>}``. A
    partition's prefix (``incidents:`` or ``incidents:{<tag>}:``, ``keys.partition_tag``)
    holds no ``lane:``, so the first one ends the lane prefix."""
    return lane.partition(_LANE_MARK)[2]


_LANE_MARK = keys.LANE_PREFIX.removeprefix(keys.PREFIX)  # "lane:"


def lane_subscription(lane: str) -> str:
    """The subscription id of a lane key (``keys.lane``, ``Keyspace.lane``)."""
    return _lane_rest(lane).split(":", 1)[0]


def lane_incident(lane: str) -> str:
    """The incident of a lane key (``keys.lane``); "" for the lane of an event without one."""
    tag = _lane_rest(lane).split(":", 1)[1]
    incident = tag[1:-1]  # inside the hash tag's braces
    return "" if incident.startswith("~") else incident


def sequence_of(delivery_id: str) -> int | None:
    """The event sequence a delivery id names (``routed_id``, and replays of it)."""
    parts = delivery_id.split("_", 2)
    if len(parts) < 3 or parts[0] != "msg" or not parts[1].isdigit():
        return None
    return int(parts[1])


def lane_space(layout: keys.Partitions, lane: str) -> keys.Keyspace:
    """The partition a lane key belongs to (its tag ``{p<n>}`` or ``{p<n>.<k>}``, when tagged)."""
    if not layout.tagged:
        return layout.spaces[0]
    start = len(keys.PREFIX) + 2  # past "incidents:{p"
    tag = lane[start : lane.index("}", start)]  # "<n>" or "<n>.<k>" (keys.partition_tag)
    return layout.spaces[int(tag.partition(".")[0])]


def record_bucket(sequence: int, layout: keys.Partitions = keys.ONE) -> str:
    """The hash that keeps the delivery records of the events of this sequence's bucket (in
    the partition that stored the event)."""
    space = layout.of_sequence(sequence)
    return space.deliveries(space.delivery_bucket(sequence))


def lane_for(
    sub_id: str, incident: str, delivery_id: str, space: keys.Keyspace = keys.SINGLE
) -> str:
    """The lane of a delivery: one per (subscription, incident) in ``space``, the partition of
    the delivery's event; one of its own for an event without incident."""
    return space.lane(sub_id, incident if incident else "~" + delivery_id)


@dataclass(frozen=True)
class Delivery:
    id: str
    sub: str
    seq: int
    lane: str
    incident: str = ""
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    created: float = 0.0
    next_at: float | None = None
    last_code: int | None = None
    last_error: str = ""
    reason: str = ""
    rule: str = ""  # the policy rule that withheld it
    silence: str = ""  # the id of the silence that held it
    # Set by routing when the subscription's sql filter failed on the event with an error:
    # the delivery only records that (naming the expression), once visibility allows.
    filter_error: str = ""

    @property
    def place(self) -> tuple[str, str]:
        """Where the record is kept: the hash of its sequence's bucket, and the field."""
        return self.place_in(keys.ONE)

    def place_in(self, layout: keys.Partitions) -> tuple[str, str]:
        """``place`` in a deployment of ``layout``: in its event's partition."""
        return record_bucket(self.seq, layout), self.id

    def encoded(self, layout: keys.Partitions = keys.ONE) -> bytes:
        """The record as stored: a JSON array [subscription, sequence, state, attempts,
        created, incident, next attempt, last status, reason, last error, lane, withholding
        rule, silence, filter error], without
        what the id already says (the subscription of a routed delivery, the lane that
        ``lane_for`` gives) and without empty values at the end. One is kept for every
        delivery until retention removes it, and a short one keeps its bucket compact."""
        derived = self.id.endswith("_" + self.sub.removeprefix("sub_"))
        space = layout.of_sequence(self.seq)
        lane = "" if self.lane == lane_for(self.sub, self.incident, self.id, space) else self.lane
        found: list[object] = [
            "" if derived else self.sub,
            self.seq,
            str(self.state),
            self.attempts,
            self.created,
            self.incident,
            self.next_at,
            self.last_code,
            self.reason,
            self.last_error,
            lane,
            self.rule,
            self.silence,
            self.filter_error,
        ]
        while found[-1] in ("", None):
            found.pop()
        return orjson.dumps(found)

    @classmethod
    def decoded(
        cls, delivery_id: str, raw: bytes | str, layout: keys.Partitions = keys.ONE
    ) -> Delivery:
        """A record as ``encoded`` stores it (in a deployment of ``layout``)."""
        found: list[Any] = orjson.loads(raw)
        found += [None] * (14 - len(found))
        sub, seq, state, attempts, created, incident = found[:6]
        next_at, last_code, reason, last_error, lane, rule, silence, filter_error = found[6:]
        sub = sub or "sub_" + delivery_id.rsplit("_", 1)[-1]
        incident = incident or ""
        return cls(
            id=delivery_id,
            sub=sub,
            seq=int(seq),
            lane=lane or lane_for(sub, incident, delivery_id, layout.of_sequence(int(seq))),
            incident=incident,
            state=DeliveryState(state or PENDING),
            attempts=int(attempts or 0),
            created=float(created or 0),
            next_at=float(next_at) if next_at is not None else None,
            last_code=int(last_code) if last_code is not None else None,
            last_error=last_error or "",
            reason=reason or "",
            rule=rule or "",
            silence=silence or "",
            filter_error=filter_error or "",
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "subscription": self.sub,
            "sequence": self.seq,
            "incident": self.incident or None,
            "state": str(self.state),
            "attempts": self.attempts,
            "created": self.created,
            "next_attempt": self.next_at,
            "last_status_code": self.last_code,
            "last_error": self.last_error or None,
            "reason": self.reason or None,
            "rule": self.rule or None,
            "silence": self.silence or None,
        }


@dataclass
class LaneResult:
    """What working a lane changed, written in one transaction."""

    lane: str
    token: str  # of the lease the lane was worked under
    due: float
    finished: list[str] = field(default_factory=list)
    records: list[Delivery] = field(default_factory=list)
    log: list[AttemptEntry] = field(default_factory=list)
    dead: list[tuple[str, float]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # records to delete (subscription gone)
    healthy: set[str] = field(default_factory=set)  # subscriptions that just succeeded
    # Channel state to keep, per (subscription, incident), written with the lane's completion.
    states: dict[tuple[str, str], ChannelState] = field(default_factory=dict)
    channel: str = ""  # the name of the channel the lane's subscription delivers through


@dataclass(frozen=True)
class RoutedBatch:
    """Outbox entries routed under a routing lease (``DeliveryStore.enqueue``)."""

    token: str  # of the routing lease
    lease_ms: int  # how long the lease is extended by
    ids: list[str]  # the outbox entry ids, acknowledged with the deliveries queued
    partition: int = 0  # whose outbox and routing lease


@dataclass(frozen=True)
class Continued:
    """The next deliveries of a lane its holder goes on with (``complete_and_continue``),
    with what working them needs, read in the same step: the subscriptions' version, the
    subscription's pause, its channel state for the lane's incident, the records (raw
    HGETALL fields, in the order of ``heads``; empty when a record is gone) and the
    silences' version."""

    heads: tuple[tuple[str, int], ...]
    version: bytes | None = None
    paused: bytes | None = None
    state: bytes | None = None
    rows: tuple[bytes | None, ...] = ()
    silences: bytes | None = None  # the silences' version


@dataclass(frozen=True)
class Claimed:
    lane: str
    token: str  # fencing token of this lease
    heads: tuple[tuple[str, int], ...]  # (delivery id, sequence), in order


class DeliveryStore:
    """The deliveries in Redis: their records, the lanes they wait in (claimed under a lease,
    renewed, completed), the attempt log and the dead letters, in every partition of
    ``layout`` (each delivery in its event's)."""

    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.redis = redis
        self.layout = layout
        # When the earliest due lane or lease end left by the last ``claim`` falls (unix
        # time; None: nothing is queued at all).
        self.next_due: float | None = None
        self._turn = 0  # the partition the next claim starts with
        self._enqueue = redis.register_script(load_script("enqueue"))
        self._claim = redis.register_script(load_script("claim"))
        self._renew = redis.register_script(load_script("renew"))
        self._complete = redis.register_script(load_script("complete"))

    async def enqueue(
        self,
        deliveries: Sequence[Delivery],
        now: float,
        force: bool = False,
        routed: RoutedBatch | None = None,
    ) -> int:
        """Queue deliveries (existing records are left alone unless ``force``); how many were
        created. With ``routed``, only under the router's lease, which is extended, and the
        outbox entries routed are acknowledged in the same step: -1 (nothing written in the
        routed partition) when the lease was lost. One step per partition the deliveries
        fall in; the routed partition's last."""
        if not deliveries and routed is None:
            return 0
        groups: dict[int, list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault(self.layout.of_sequence(d.seq).partition, []).append(d)
        if routed is not None:
            groups[routed.partition] = groups.pop(routed.partition, [])  # last
        created, woke = 0, False
        async with guarded("queueing deliveries"):
            for partition, group in groups.items():
                lease = routed if routed is not None and routed.partition == partition else None
                made, made_due = await self._enqueue_in(
                    self.layout.spaces[partition], group, now, force, lease
                )
                if made < 0:
                    return -1
                created, woke = created + made, woke or made_due
            if woke:  # a tagged layout: the wake stream is global, written beside the scripts
                await self.redis.xadd(
                    keys.LANES_WAKE, {"due": repr(now)}, maxlen=WAKE_KEEP, approximate=True
                )
        return created

    async def _enqueue_in(
        self,
        space: keys.Keyspace,
        deliveries: Sequence[Delivery],
        now: float,
        force: bool,
        routed: RoutedBatch | None,
    ) -> tuple[int, bool]:
        """``enqueue`` in one partition: (how many were created or -1, whether a lane became
        due and the caller adds the wake entry)."""
        items = [
            {
                "id": d.id,
                "lane": d.lane,
                "seq": d.seq,
                "bucket": d.place_in(self.layout)[0],
                "record": d.encoded(self.layout).decode(),
            }
            for d in deliveries
        ]
        script_keys = [
            space.DELIVERY_BUCKETS,
            space.DEAD_LETTERS,
            space.LANES_LEASED,
            space.LANES_DUE,
            space.ROUTE_LOCK,
            space.OUTBOX,
        ]
        if not self.layout.tagged:  # one Redis, one partition: the wake entry in the script
            script_keys.append(keys.LANES_WAKE)
        args: list[str | int | float | bytes] = [
            repr(now),
            orjson.dumps(items),
            "1" if force else "0",
            WAKE_KEEP,
        ]
        if routed is not None:
            args += [routed.token, routed.lease_ms, keys.ROUTER_GROUP, orjson.dumps(routed.ids)]
        else:
            args += ["", "", "", "[]"]
        args.append(space.delivery_bucket_size)
        created, woke = await self._enqueue(keys=script_keys, args=args)
        return int(created), bool(woke) and self.layout.tagged

    async def claim(
        self,
        now: float,
        lanes: int,
        per_lane: int,
        held: Mapping[str, int] | None = None,
        cap: int | None = None,
    ) -> list[Claimed]:
        """Lease up to ``lanes`` due lanes, none of a subscription that already holds ``cap``
        lanes (``held``: subscription id -> lanes the caller holds now). Sets ``next_due``.

        With several partitions each is asked in turn (starting with the next one at each
        call) for a fair share of what is still wanted; what one leaves goes to the others,
        and the partitions that filled their share are asked again for what is left."""
        spaces = self.layout.spaces
        if len(spaces) == 1:
            claimed, self.next_due = await self._claim_in(
                spaces[0], now, lanes, per_lane, held or {}, cap
            )
            return claimed
        cap = lanes if cap is None else cap  # of the whole claim, not of one partition's
        start = self._turn
        self._turn = (start + 1) % len(spaces)
        order = spaces[start:] + spaces[:start]
        holding: Counter[str] = Counter(held or {})
        out: list[Claimed] = []
        dues: list[float] = []
        filled: list[keys.Keyspace] = []

        async def take(space: keys.Keyspace, wanted: int) -> int:
            found, due = await self._claim_in(space, now, wanted, per_lane, holding, cap)
            if due is not None:
                dues.append(due)
            for c in found:
                holding[lane_subscription(c.lane)] += 1
            out.extend(found)
            return len(found)

        for i, space in enumerate(order):
            wanted = -(-(lanes - len(out)) // (len(order) - i))  # a fair share of what is left
            if await take(space, wanted) >= wanted > 0:
                filled.append(space)
        for space in filled:
            if len(out) >= lanes:
                break
            await take(space, lanes - len(out))
        self.next_due = min(dues) if dues else None
        return out

    async def _claim_in(
        self,
        space: keys.Keyspace,
        now: float,
        lanes: int,
        per_lane: int,
        held: Mapping[str, int],
        cap: int | None,
    ) -> tuple[list[Claimed], float | None]:
        """``claim`` in one partition: the lanes leased, and when its next lane or lease
        falls due."""
        raw = await self._claim(
            keys=[space.LANES_DUE, space.LANES_LEASED, space.LANE_HOLDERS, space.LANE_TOKENS],
            args=[
                repr(now),
                repr(now + LEASE_SECONDS),
                lanes,
                per_lane,
                lanes if cap is None else cap,
                orjson.dumps(dict(held)),
                CAPPED_DEFER_SECONDS,
                lanes + CLAIM_SCAN_EXTRA,
                space.LANE_PREFIX,
            ],
        )
        first = raw[0].decode()
        out, i = [], 1
        while i < len(raw):
            lane, token, n = raw[i].decode(), str(raw[i + 1]), int(raw[i + 2])
            out.append(Claimed(lane, token, _heads(raw[i + 3 : i + 3 + 2 * n])))
            i += 3 + 2 * n
        return out, float(first) if first else None

    def expect(self, due: float) -> None:
        """A lane was handed back due at ``due``: make ``next_due`` no later."""
        self.next_due = due if self.next_due is None else min(self.next_due, due)

    async def renew(self, leases: Iterable[Claimed], now: float) -> int:
        """Extend the leases still held; how many were."""
        pairs: dict[int, list[str]] = {}
        for c in leases:
            pairs.setdefault(lane_space(self.layout, c.lane).partition, []).extend(
                (c.lane, c.token)
            )
        renewed = 0
        for partition, flat in pairs.items():
            space = self.layout.spaces[partition]
            renewed += int(
                await self._renew(
                    keys=[space.LANES_LEASED, space.LANE_HOLDERS],
                    args=[repr(now + LEASE_SECONDS), *flat],
                )
            )
        return renewed

    async def records(self, ids: Sequence[str]) -> dict[str, Delivery]:
        """The records of deliveries by id (an id that names no sequence has none)."""
        known = [(i, seq) for i in ids if (seq := sequence_of(i)) is not None]
        pipe = self.redis.pipeline(transaction=False)
        for i, seq in known:
            pipe.hget(record_bucket(seq, self.layout), i)
        rows = await pipe.execute()
        return {
            i: Delivery.decoded(i, r, self.layout)
            for (i, _), r in zip(known, rows, strict=True)
            if r
        }

    async def complete(self, result: LaneResult) -> bool:
        """Write what working the lane changed, in one step, and hand the lane back; False
        (nothing written) when the lease was lost meanwhile."""
        return await self.complete_and_continue(result, 0, 0.0) is not None

    async def complete_and_continue(
        self, result: LaneResult, more: int, now: float
    ) -> Continued | None:
        """``complete``, but while the lane holds more deliveries (queued meanwhile, or left
        over) its lease is kept, extended from ``now``, and the next ``more`` of them returned
        to be worked under it, with their records, the subscriptions' version, the pause and
        the channel state read in the same step; no heads when the lane was handed back; None
        (nothing written) when the lease was lost. With a tagged layout the global keys (the
        versions, the pause, the healthy subscriptions' ``failing_since``) are read and
        written next to the lane's step, not in it."""
        sub_id = lane_subscription(result.lane)
        space = lane_space(self.layout, result.lane)
        tagged = self.layout.tagged
        payload: dict[str, object] = {
            "more": more,
            "lease_until": now + LEASE_SECONDS,
            "lane": result.lane,
            "token": result.token,
            "state_key": space.channel_state(sub_id),
            "state_field": lane_incident(result.lane) or "~",
            "record_prefix": space.deliveries(0)[:-1],
            "bucket_size": space.delivery_bucket_size,
            "due": result.due,
            "finished": result.finished,
            "records": [
                {
                    "key": r.place_in(self.layout)[0],
                    "id": r.id,
                    "value": r.encoded(self.layout).decode(),
                }
                for r in result.records
            ],
            "log": [
                {"key": space.attempts(entry.subscription), "entry": entry.encoded()}
                for entry in result.log
            ],
            "log_length": LOG_LENGTH,
            **delivery_metrics.payload(result.log, space),
            "dead": [{"id": i, "at": at} for i, at in result.dead],
            "healthy": [] if tagged else [keys.subscription(s) for s in result.healthy],
            "dropped": [
                {"key": record_bucket(seq, self.layout), "id": i}
                for i in result.dropped
                if (seq := sequence_of(i)) is not None
            ],
            "states": [
                {
                    "key": space.channel_state(sub),
                    "field": incident,
                    "value": state.encoded(),
                    # the record in the other system, shown in the incident's external_refs
                    "refs": space.incident_refs(incident),
                    "ref_fields": _ref_fields(result.channel, sub, state),
                }
                for (sub, incident), state in result.states.items()
            ],
        }
        if not tagged:  # read in the lane's step
            payload["version_key"] = keys.SUBSCRIPTIONS_VERSION
            payload["silences_key"] = keys.SILENCES_VERSION
            payload["paused_key"] = keys.paused(sub_id)
        raw = await self._complete(
            keys=[space.LANES_DUE, space.LANES_LEASED, space.LANE_HOLDERS, space.DEAD_LETTERS],
            args=[orjson.dumps(payload)],
        )
        if not int(raw[0]):
            return None
        read: list[Any] = [None, None, None]
        if tagged and (result.healthy or len(raw) > 1):
            pipe = self.redis.pipeline(transaction=False)
            for s in sorted(result.healthy):
                pipe.hdel(keys.subscription(s), "failing_since")
            # GETs, not one MGET: a cluster's pipelines take no multi-key command
            for key in (keys.SUBSCRIPTIONS_VERSION, keys.paused(sub_id), keys.SILENCES_VERSION):
                pipe.get(key)
            read = (await pipe.execute())[-3:]
        if len(raw) == 1:
            return Continued(())
        heads, version, paused, state, silences, *rows = raw[1:]
        if tagged:
            version, paused, silences = read
        return Continued(
            _heads(heads), version, paused, state, tuple(r or None for r in rows), silences
        )

    async def attempts(self, sub_id: str, limit: int) -> list[dict[str, object]]:
        """The subscription's attempt log, newest first, as stored (``AttemptEntry``); the
        partitions' logs merged by time."""
        async with guarded("reading deliveries"):
            found = await asyncio.gather(
                *(self.redis.lrange(s.attempts(sub_id), 0, limit - 1) for s in self.layout)
            )
        entries: list[dict[str, Any]] = [orjson.loads(r) for rows in found for r in rows]
        if len(found) > 1:
            entries.sort(key=_attempt_time, reverse=True)  # stable: each log's order kept
        return entries[:limit]

    async def dead_letters(self, limit: int) -> list[Delivery]:
        """The latest ``limit`` dead letters, newest first, of every partition."""
        async with guarded("reading dead letters"):
            found = await asyncio.gather(
                *(
                    self.redis.zrevrange(s.DEAD_LETTERS, 0, limit - 1, withscores=True)
                    for s in self.layout
                )
            )
            scored = cast(list[list[tuple[bytes, float]]], found)
            newest = sorted(
                ((float(at), i.decode()) for rows in scored for i, at in rows),
                key=lambda x: -x[0],
            )
            ids = [i for _, i in newest[:limit]]
            records = await self.records(ids)
        return [records[i] for i in ids if i in records]

    async def get(self, delivery_id: str) -> Delivery | None:
        async with guarded("reading a delivery"):
            found = await self.records([delivery_id])
        return found.get(delivery_id)


def _attempt_time(entry: Mapping[str, Any]) -> float:
    """When an attempt log entry was made (its ``time``, RFC 3339)."""
    try:
        return datetime.fromisoformat(str(entry.get("time"))).timestamp()
    except ValueError:
        return 0.0


def _heads(flat: Sequence[bytes]) -> tuple[tuple[str, int], ...]:
    """(delivery id, sequence) pairs from a flat [id, sequence, ...] reply."""
    return tuple((flat[j].decode(), int(float(flat[j + 1]))) for j in range(0, len(flat), 2))


def _ref_fields(channel: str, sub_id: str, state: ChannelState) -> list[str]:
    """The incident's ``external_refs`` entries for a record kept in channel state: flat
    [name, value, ...], ``<channel>:<subscription>`` -> the external id (and ``...:number``
    when the system also gave the record a human number, as ServiceNow does)."""
    if not state.external_id:
        return []
    name = f"{channel}:{sub_id}"
    fields = [name, state.external_id]
    if number := state.data.get("number"):
        fields += [f"{name}:number", number]
    return fields
