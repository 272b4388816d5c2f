"""The sweeper: removes what retention says is past its time, from time-ordered indexes,
a bounded amount per step, never what is still needed.

- Events, with their entries in the id index (their dedup keys), once older than
  ``INCIDENTS_RETENTION``. Sequences grow with acceptance time, so the sequence itself is the
  index: a cursor (``incidents:sweep:events``) walks them in order. An event on an incident's
  timeline is part of that incident and stays as long as it does; its dedup key goes.
- Delivery records (and so dead letters) of the events the cursor has passed, found through
  ``incidents:deliveries:<bucket>`` (delivery id -> sequence); attempt-log entries older than the
  retention, from the tail of each subscription's log.
- Closed incidents (document, timeline and its events, external references, channel state)
  once closed longer than ``INCIDENTS_INCIDENT_RETENTION`` (``incidents:closed-incidents``),
  and resolved alerts as long after their resolve (``incidents:resolved-alerts``).
- Outbox entries older than the retention (the stream is trimmed by length elsewhere).

Nothing at or above the delivery floor (``retention.needed``) is touched: events not routed
yet, events a lane still holds, and what references them. With an archive, what is removed
is appended there first; if that fails nothing is removed (``ArchiveError``).

One worker sweeps at a time, holding ``incidents:sweep:lock``; each worker process runs a
loop that tries every ``SWEEP_EVERY`` seconds, so what is due goes within seconds.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import redis

from incidents.archive.daily import DELIVERIES, EVENTS, Archive, ArchiveError
from incidents.archive.records import (
    ALERT_TYPE,
    ATTEMPT_TYPE,
    DELIVERY_TYPE,
    INCIDENT_TYPE,
    event_record,
    snapshot,
)
from incidents.delivery.channels.base import ChannelState
from incidents.delivery.lanes import Delivery, DeliveryState
from incidents.model.alert import Alert
from incidents.model.cloudevent import StoredEvent
from incidents.model.types import Extension
from incidents.retention.needed import Frontier, lowest_in_lanes, routing_frontier
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.events import stored_event
from incidents.store.scripts import load_script

log = logging.getLogger("incidents.retention")

KINDS = ("event", "dedup", "delivery", "dead_letter", "attempt", "incident", "alert", "stream")
EVENTS_PER_STEP = 200
DELIVERIES_PER_STEP = 1000
TIMELINE_PER_STEP = 500  # events of closed incidents removed per step
DOCUMENTS_PER_STEP = 50  # incidents and alerts looked at per step
ATTEMPTS_PER_STEP = 200  # attempt-log entries looked at per subscription per step
SWEEP_EVERY = 5.0  # seconds between two rounds of a worker's loop (at most 10 s is promised)
ROUND_SECONDS = 2.0  # a round stops stepping after this long (the rest waits for the next)
LEASE_MS = 30_000
_UNFINISHED = {DeliveryState.PENDING.value.encode(), DeliveryState.RETRYING.value.encode()}


class Sweeper:
    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        clock: Callable[[], float],
        archive: Archive | None = None,
    ) -> None:
        self.client = client
        self.retention = settings.retention.seconds
        self.incident_retention = settings.incident_retention.seconds
        self.clock = clock
        self.archive = archive
        self._forget = client.register_script(load_script("forget"))
        self._renew = client.register_script(load_script("lease"))
        self._unlock = client.register_script(load_script("unlock"))

    # ---- rounds, under the lease ---------------------------------------------------------

    def sweep(self, seconds: float = ROUND_SECONDS) -> Counter[str] | None:
        """Step until nothing more is due or ``seconds`` pass; None when another worker
        holds the lease. Raises ArchiveError (nothing of that step removed)."""
        token = secrets.token_hex(8)
        if not self.client.set(keys.SWEEP_LOCK, token, nx=True, px=LEASE_MS):
            return None
        total: Counter[str] = Counter()
        try:
            stop = time.monotonic() + seconds
            while True:
                removed = self.step()
                total.update(removed)
                if not removed or time.monotonic() > stop:
                    break
                if not self._renew(keys=[keys.SWEEP_LOCK], args=[token, LEASE_MS]):
                    break  # the lease ran out (a long stall): another worker sweeps
        finally:
            self._unlock(keys=[keys.SWEEP_LOCK], args=[token])
        return total

    def run(self, stop: threading.Event) -> None:
        """Sweep every ``SWEEP_EVERY`` seconds until ``stop``, riding out Redis outages and
        archive failures (logged; nothing is removed until the archive takes it)."""
        failing = ""
        while not stop.wait(SWEEP_EVERY):
            try:
                self.sweep()
            except (redis.exceptions.RedisError, OSError, ArchiveError) as exc:
                if str(exc) != failing:
                    log.error("retention: nothing removed this round: %s", exc)
                failing = str(exc)
                continue
            except Exception:  # a bug must not end retention for good: next round tries again
                log.exception("retention: the sweep failed; trying again next round")
                continue
            if failing:
                log.warning("retention: sweeping again")
                failing = ""

    def step(self) -> Counter[str]:
        """One bounded step of each kind; what it removed, by kind (also counted in Redis
        for ``incidents_retention_removed_total``)."""
        now = self.clock()
        cutoff, closed_cutoff = now - self.retention, now - self.incident_retention
        last = int(cast(bytes | None, self.client.get(keys.SEQUENCE)) or 0)
        frontier = routing_frontier(self.client)
        floor = last + 1
        for needed in (frontier.sequence, lowest_in_lanes(self.client)):
            if needed is not None:
                floor = min(floor, needed)
        removed: Counter[str] = Counter()
        self._events(cutoff, min(last, floor - 1), removed)
        self._deliveries(removed)
        self._attempts(cutoff, removed)
        self._incidents(closed_cutoff, floor, removed)
        self._alerts(closed_cutoff, removed)
        self._stream(cutoff, frontier, removed)
        removed = +removed  # only what was removed
        if removed:
            with self.client.pipeline(transaction=False) as pipe:
                for kind, n in removed.items():
                    pipe.hincrby(keys.RETENTION_REMOVED, kind, n)
                pipe.execute()
        return removed

    # ---- kinds ---------------------------------------------------------------------------

    def _events(self, cutoff: float, highest: int, removed: Counter[str]) -> None:
        """Events up to ``highest`` older than ``cutoff``, in sequence order."""
        swept = int(cast(bytes | None, self.client.get(keys.SWEPT_UP_TO)) or 0)
        upto = min(highest, swept + EVENTS_PER_STEP)
        if upto <= swept:
            return
        seqs = list(range(swept + 1, upto + 1))
        raws = cast(list[bytes | None], self.client.mget([keys.event(s) for s in seqs]))
        done, expired, whole = swept, [], []
        for seq, raw in zip(seqs, raws, strict=True):
            if raw is not None:
                stored = stored_event(raw)
                if stored.ingested_at.timestamp() > cutoff:
                    break
                expired.append(stored)
                if not _incident(stored):  # one on a timeline stays with its incident
                    whole.append(stored)
            done = seq
        self._archive(EVENTS, [event_record(s) for s in whole])
        kept = [s for s in expired if _incident(s)]
        with self.client.pipeline(transaction=False) as pipe:
            _forget_events(pipe, whole)
            for s in kept:
                pipe.hdel(keys.by_id(s.event.id), s.event.source)
            pipe.set(keys.SWEPT_UP_TO, done)
            answers = pipe.execute()
        forgotten = answers[: 2 * len(whole)]
        removed["event"] += sum(forgotten[0::2])
        removed["dedup"] += sum(forgotten[1::2]) + sum(answers[len(forgotten) : -1])

    def _deliveries(self, removed: Counter[str]) -> None:
        """Delivery records of the events the cursor has passed, once finished, a bucket of
        sequences at a time."""
        swept = int(cast(bytes | None, self.client.get(keys.SWEPT_UP_TO)) or 0)
        reached = swept // keys.DELIVERY_BUCKET  # the bucket the cursor is in
        found = self.client.zrangebyscore(keys.DELIVERY_BUCKETS, "-inf", reached, start=0, num=16)
        budget = DELIVERIES_PER_STEP
        for bucket in (int(b) for b in cast(list[bytes], found)):
            if budget <= 0:
                return
            key = keys.deliveries(bucket)
            passed = self.client.zrangebyscore(key, "-inf", swept, start=0, num=budget)
            ids = [i.decode() for i in cast(list[bytes], passed)]
            budget -= len(ids)
            if ids:
                self._bucket(key, ids, removed)
            # Out of the list first, then back if anything is left (or was queued meanwhile).
            self.client.zrem(keys.DELIVERY_BUCKETS, bucket)
            if self.client.zcard(key):
                self.client.zadd(keys.DELIVERY_BUCKETS, {str(bucket): bucket})

    def _bucket(self, key: str, ids: list[str], removed: Counter[str]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(keys.delivery(i))
            rows = cast(list[dict[bytes, bytes]], pipe.execute())
        # A redriven dead letter is queued again under its id: it waits for its delivery.
        done = [
            (i, row)
            for i, row in zip(ids, rows, strict=True)
            if row.get(b"state") not in _UNFINISHED
        ]
        if not done:
            return
        self._archive(DELIVERIES, [_delivery_record(i, row) for i, row in done if row])
        finished = [i for i, _ in done]
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(*[keys.delivery(i) for i in finished])
            pipe.zrem(key, *finished)
            pipe.zrem(keys.DEAD_LETTERS, *finished)
            deleted, _, dead = pipe.execute()
        removed["delivery"] += int(deleted)
        removed["dead_letter"] += int(dead)

    def _attempts(self, cutoff: float, removed: Counter[str]) -> None:
        """Attempt-log entries older than ``cutoff`` (the oldest are at each log's tail)."""
        subs = sorted(cast(bytes, s).decode() for s in self.client.smembers(keys.SUBSCRIPTIONS))
        for sub in subs:
            key = keys.attempts(sub)
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    # A log written meanwhile is left for the next step.
                    pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    tail = cast(list[bytes], pipe.lrange(key, -ATTEMPTS_PER_STEP, -1))
                    n = _oldest_run(tail, cutoff)
                    old = tail[len(tail) - n :][::-1]  # oldest first
                    if not old:
                        continue
                    self._archive(DELIVERIES, [_attempt_record(sub, e) for e in old])
                    pipe.multi()
                    pipe.ltrim(key, 0, -(len(old) + 1))
                    pipe.execute()
                except redis.exceptions.WatchError:
                    continue
            removed["attempt"] += len(old)

    def _incidents(self, cutoff: float, floor: int, removed: Counter[str]) -> None:
        """Incidents closed before ``cutoff``: their timelines' events first, a bounded number
        per step, then the document, its references and index entries."""
        found = self.client.zrangebyscore(
            keys.CLOSED_INCIDENTS, "-inf", cutoff, start=0, num=DOCUMENTS_PER_STEP
        )
        budget = TIMELINE_PER_STEP
        for incident_id in (i.decode() for i in cast(list[bytes], found)):
            if budget <= 0:
                return
            timeline = keys.timeline(incident_id)
            newest = self.client.zrange(timeline, -1, -1, withscores=True)
            if newest and int(float(newest[0][1])) >= floor:
                continue  # delivery still needs its latest events
            members = cast(list[bytes], self.client.zrange(timeline, 0, budget - 1))
            if members:
                seqs = [int(m) for m in members]
                raws = cast(list[bytes | None], self.client.mget([keys.event(s) for s in seqs]))
                events = [stored_event(r) for r in raws if r is not None]
                self._archive(EVENTS, [event_record(s) for s in events])
                with self.client.pipeline(transaction=False) as pipe:
                    _forget_events(pipe, events)
                    pipe.zrem(timeline, *members)
                    answers = pipe.execute()
                removed["event"] += sum(answers[: 2 * len(events) : 2])
                removed["dedup"] += sum(answers[1 : 2 * len(events) : 2])
                budget -= len(members)
                if self.client.exists(timeline):
                    return  # the rest of this timeline next step
            if self._forget_incident(incident_id):
                removed["incident"] += 1

    def _forget_incident(self, incident_id: str) -> bool:
        doc, refs_key = keys.incident(incident_id), keys.incident_refs(incident_id)
        version, raw = cast(list[bytes | None], self.client.hmget(doc, ["v", "j"]))
        stored_refs = cast(dict[bytes, bytes], self.client.hgetall(refs_key))
        refs = {k.decode(): v.decode() for k, v in stored_refs.items()}
        if raw is not None:
            document = orjson.loads(raw)
            at = _parse(document.get("updated_at")) or datetime.now(UTC)
            data = {"incident": document, "refs": refs}
            line = snapshot(INCIDENT_TYPE, incident_id, at, data, int(version or 0))
            self._archive(EVENTS, [line])
        gone = self._forget(
            keys=[
                doc,
                refs_key,
                keys.timeline(incident_id),
                keys.INCIDENT_INDEX,
                keys.CLOSED_INCIDENTS,
            ],
            args=[(version or b"0").decode(), incident_id, 2],
        )
        if not int(gone):
            return False
        self._forget_channel_state(incident_id)
        return raw is not None

    def _forget_channel_state(self, incident_id: str) -> None:
        """What each subscription's channel kept for the incident: its state, what the other
        system last sent, and that system's record id pointing back at it."""
        subs = sorted(cast(bytes, s).decode() for s in self.client.smembers(keys.SUBSCRIPTIONS))
        with self.client.pipeline(transaction=False) as pipe:
            for sub in subs:
                pipe.hget(keys.channel_state(sub), incident_id)
            states = cast(list[bytes | None], pipe.execute())
        with self.client.pipeline(transaction=False) as pipe:
            for sub, state in zip(subs, states, strict=True):
                pipe.hdel(keys.channel_state(sub), incident_id)
                pipe.hdel(keys.sync_seen(sub), incident_id)
                if state is not None:
                    kept = ChannelState.decode(state)
                    records = [kept.external_id, kept.data.get("number")]
                    for record in filter(None, records):
                        pipe.hdel(keys.sync_records(sub), record)
            pipe.execute()

    def _alerts(self, cutoff: float, removed: Counter[str]) -> None:
        """Alerts resolved before ``cutoff`` (one that fired again since is left)."""
        found = self.client.zrangebyscore(
            keys.RESOLVED_ALERTS, "-inf", cutoff, start=0, num=DOCUMENTS_PER_STEP
        )
        for doc_key in (k.decode() for k in cast(list[bytes], found)):
            version, raw = cast(list[bytes | None], self.client.hmget(doc_key, ["v", "j"]))
            alert = Alert.from_dict(orjson.loads(raw)) if raw is not None else None
            if alert is not None and alert.is_open:
                self.client.zrem(keys.RESOLVED_ALERTS, doc_key)  # indexed again at its resolve
                continue
            if alert is not None:
                at = _parse(alert.resolved_at or alert.last_seen) or datetime.now(UTC)
                record_id = f"{alert.tenant}/{alert.key}"
                line = snapshot(
                    ALERT_TYPE, record_id, at, {"alert": alert.to_dict()}, int(version or 0)
                )
                self._archive(EVENTS, [line])
            gone = self._forget(
                keys=[doc_key, keys.ALERT_INDEX, keys.RESOLVED_ALERTS],
                args=[(version or b"0").decode(), doc_key, 0],
            )
            if int(gone) and alert is not None:
                removed["alert"] += 1

    def _stream(self, cutoff: float, frontier: Frontier, removed: Counter[str]) -> None:
        """Outbox entries older than ``cutoff``, never one not routed yet."""
        minid = f"{int(cutoff * 1000)}-0"
        if frontier.entry_id is not None and _stream_id(frontier.entry_id) < _stream_id(minid):
            minid = frontier.entry_id
        trimmed = self.client.xtrim(keys.OUTBOX, minid=minid, approximate=False)
        removed["stream"] += int(trimmed)

    def _archive(self, kind: str, records: Sequence[dict[str, Any]]) -> None:
        if self.archive is not None and records:
            self.archive.append(kind, records)


def _forget_events(pipe: Any, events: Sequence[StoredEvent]) -> None:
    """Queue the removal of events: two commands each (the event, and its entry in the id
    index, which is its dedup key too)."""
    for s in events:
        pipe.delete(keys.event(s.sequence))
        pipe.hdel(keys.by_id(s.event.id), s.event.source)


def _incident(stored: StoredEvent) -> str:
    value = stored.event.get(Extension.INCIDENT_ID)
    return str(value) if value else ""


def _delivery_record(delivery_id: str, row: dict[bytes, bytes]) -> dict[str, Any]:
    found = Delivery.from_fields(delivery_id, row)
    at = datetime.fromtimestamp(found.created or 0, UTC)
    return snapshot(DELIVERY_TYPE, delivery_id, at, {"delivery": found.to_dict()})


def _attempt_time(entry: bytes) -> float:
    when = _parse(orjson.loads(entry).get("time"))
    return when.timestamp() if when is not None else 0.0


def _oldest_run(tail: list[bytes], cutoff: float) -> int:
    """How many entries at the very end of the log are older than ``cutoff``."""
    n = 0
    for entry in reversed(tail):
        if _attempt_time(entry) >= cutoff:
            break
        n += 1
    return n


def _attempt_record(sub: str, entry: bytes) -> dict[str, Any]:
    found = orjson.loads(entry)
    at = _parse(found.get("time")) or datetime.now(UTC)
    record_id = f"{found.get('delivery')}/{found.get('attempt')}/{found.get('outcome')}"
    return snapshot(ATTEMPT_TYPE, record_id, at, {"subscription": sub, "attempt": found})


def _parse(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        found = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
