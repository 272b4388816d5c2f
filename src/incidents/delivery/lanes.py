"""Delivery records, lanes and dead letters: the durable state of every delivery.

A delivery is one (event, subscription) pair, kept in ``incidents:deliveries:<bucket>`` (a
hash per 32 sequences, field: the delivery id; ``Delivery.encoded``) with its
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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


def lane_subscription(lane: str) -> str:
    """The subscription id of a lane key (``keys.lane``)."""
    return lane.removeprefix(keys.LANE_PREFIX).split(":", 1)[0]


def lane_incident(lane: str) -> str:
    """The incident of a lane key (``keys.lane``); "" for the lane of an event without one."""
    tag = lane.removeprefix(keys.LANE_PREFIX).split(":", 1)[1]
    incident = tag[1:-1]  # inside the hash tag's braces
    return "" if incident.startswith("~") else incident


def sequence_of(delivery_id: str) -> int | None:
    """The event sequence a delivery id names (``routed_id``, and replays of it)."""
    parts = delivery_id.split("_", 2)
    if len(parts) < 3 or parts[0] != "msg" or not parts[1].isdigit():
        return None
    return int(parts[1])


def record_bucket(sequence: int) -> str:
    """The hash that keeps the delivery records of the events of this sequence's bucket."""
    return keys.deliveries(sequence // keys.DELIVERY_BUCKET)


def lane_for(sub_id: str, incident: str, delivery_id: str) -> str:
    return keys.lane(sub_id, incident if incident else "~" + delivery_id)


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
        return keys.deliveries(self.seq // keys.DELIVERY_BUCKET), self.id

    def encoded(self) -> bytes:
        """The record as stored: a JSON array [subscription, sequence, state, attempts,
        created, incident, next attempt, last status, reason, last error, lane, withholding
        rule, silence, filter error], without
        what the id already says (the subscription of a routed delivery, the lane that
        ``lane_for`` gives) and without empty values at the end. One is kept for every
        delivery until retention removes it, and a short one keeps its bucket compact."""
        derived = self.id.endswith("_" + self.sub.removeprefix("sub_"))
        lane = "" if self.lane == lane_for(self.sub, self.incident, self.id) else self.lane
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
    def decoded(cls, delivery_id: str, raw: bytes | str) -> Delivery:
        """A record as ``encoded`` stores it."""
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
            lane=lane or lane_for(sub, incident, delivery_id),
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
    renewed, completed), the attempt log and the dead letters."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        # When the earliest due lane or lease end left by the last ``claim`` falls (unix
        # time; None: nothing is queued at all).
        self.next_due: float | None = None
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
        outbox entries routed are acknowledged in the same step: -1 (nothing written) when
        the lease was lost."""
        if not deliveries and routed is None:
            return 0
        items = [
            {
                "id": d.id,
                "lane": d.lane,
                "seq": d.seq,
                "bucket": d.place[0],
                "record": d.encoded().decode(),
            }
            for d in deliveries
        ]
        script_keys = [keys.LANES_WAKE]
        args: list[str | int | float | bytes] = [
            repr(now),
            orjson.dumps(items),
            "1" if force else "0",
            WAKE_KEEP,
        ]
        if routed is not None:
            script_keys += [keys.ROUTE_LOCK, keys.OUTBOX]
            args += [routed.token, routed.lease_ms, keys.ROUTER_GROUP, orjson.dumps(routed.ids)]
        else:
            args += ["", "", "", "[]"]
        args.append(keys.DELIVERY_BUCKET)
        async with guarded("queueing deliveries"):
            created = await self._enqueue(keys=script_keys, args=args)
        return int(created)

    async def claim(
        self,
        now: float,
        lanes: int,
        per_lane: int,
        held: Mapping[str, int] | None = None,
        cap: int | None = None,
    ) -> list[Claimed]:
        """Lease up to ``lanes`` due lanes, none of a subscription that already holds ``cap``
        lanes (``held``: subscription id -> lanes the caller holds now). Sets ``next_due``."""
        raw = await self._claim(
            keys=[keys.LANES_DUE, keys.LANES_LEASED, keys.LANE_HOLDERS, keys.LANE_TOKENS],
            args=[
                repr(now),
                repr(now + LEASE_SECONDS),
                lanes,
                per_lane,
                lanes if cap is None else cap,
                orjson.dumps(dict(held or {})),
                CAPPED_DEFER_SECONDS,
                lanes + CLAIM_SCAN_EXTRA,
                keys.LANE_PREFIX,
            ],
        )
        first = raw[0].decode()
        self.next_due = float(first) if first else None
        out, i = [], 1
        while i < len(raw):
            lane, token, n = raw[i].decode(), str(raw[i + 1]), int(raw[i + 2])
            out.append(Claimed(lane, token, _heads(raw[i + 3 : i + 3 + 2 * n])))
            i += 3 + 2 * n
        return out

    def expect(self, due: float) -> None:
        """A lane was handed back due at ``due``: make ``next_due`` no later."""
        self.next_due = due if self.next_due is None else min(self.next_due, due)

    async def renew(self, leases: Iterable[Claimed], now: float) -> int:
        """Extend the leases still held; how many were."""
        pairs = [x for c in leases for x in (c.lane, c.token)]
        if not pairs:
            return 0
        return int(
            await self._renew(
                keys=[keys.LANES_LEASED, keys.LANE_HOLDERS],
                args=[repr(now + LEASE_SECONDS), *pairs],
            )
        )

    async def records(self, ids: Sequence[str]) -> dict[str, Delivery]:
        """The records of deliveries by id (an id that names no sequence has none)."""
        known = [(i, seq) for i in ids if (seq := sequence_of(i)) is not None]
        pipe = self.redis.pipeline(transaction=False)
        for i, seq in known:
            pipe.hget(record_bucket(seq), i)
        rows = await pipe.execute()
        return {i: Delivery.decoded(i, r) for (i, _), r in zip(known, rows, strict=True) if r}

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
        (nothing written) when the lease was lost."""
        sub_id = lane_subscription(result.lane)
        payload = {
            "more": more,
            "lease_until": now + LEASE_SECONDS,
            "lane": result.lane,
            "token": result.token,
            "version_key": keys.SUBSCRIPTIONS_VERSION,
            "silences_key": keys.SILENCES_VERSION,
            "paused_key": keys.paused(sub_id),
            "state_key": keys.channel_state(sub_id),
            "state_field": lane_incident(result.lane) or "~",
            "record_prefix": keys.deliveries(0)[:-1],
            "bucket_size": keys.DELIVERY_BUCKET,
            "due": result.due,
            "finished": result.finished,
            "records": [
                {"key": r.place[0], "id": r.id, "value": r.encoded().decode()}
                for r in result.records
            ],
            "log": [
                {"key": keys.attempts(entry.subscription), "entry": entry.encoded()}
                for entry in result.log
            ],
            "log_length": LOG_LENGTH,
            **delivery_metrics.payload(result.log),
            "dead": [{"id": i, "at": at} for i, at in result.dead],
            "healthy": [keys.subscription(s) for s in result.healthy],
            "dropped": [
                {"key": record_bucket(seq), "id": i}
                for i in result.dropped
                if (seq := sequence_of(i)) is not None
            ],
            "states": [
                {
                    "key": keys.channel_state(sub),
                    "field": incident,
                    "value": state.encoded(),
                    # the record in the other system, shown in the incident's external_refs
                    "refs": keys.incident_refs(incident),
                    "ref_fields": _ref_fields(result.channel, sub, state),
                }
                for (sub, incident), state in result.states.items()
            ],
        }
        raw = await self._complete(
            keys=[keys.LANES_DUE, keys.LANES_LEASED, keys.LANE_HOLDERS, keys.DEAD_LETTERS],
            args=[orjson.dumps(payload)],
        )
        if not int(raw[0]):
            return None
        if len(raw) == 1:
            return Continued(())
        heads, version, paused, state, silences, *rows = raw[1:]
        return Continued(
            _heads(heads), version, paused, state, tuple(r or None for r in rows), silences
        )

    async def attempts(self, sub_id: str, limit: int) -> list[dict[str, object]]:
        """The subscription's attempt log, newest first, as stored (``AttemptEntry``)."""
        async with guarded("reading deliveries"):
            rows = await self.redis.lrange(keys.attempts(sub_id), 0, limit - 1)
        return [orjson.loads(r) for r in rows]

    async def dead_letters(self, limit: int) -> list[Delivery]:
        async with guarded("reading dead letters"):
            raw = await self.redis.zrevrange(keys.DEAD_LETTERS, 0, limit - 1)
            ids = [cast(bytes, i).decode() for i in raw]
            found = await self.records(ids)
        return [found[i] for i in ids if i in found]

    async def get(self, delivery_id: str) -> Delivery | None:
        async with guarded("reading a delivery"):
            found = await self.records([delivery_id])
        return found.get(delivery_id)


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
