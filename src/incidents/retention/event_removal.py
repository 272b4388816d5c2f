"""Removal by age of what hangs off events, one partition at a time: the events (in sequence
order, which is the order the partition accepted them in), their id index entries (the dedup
keys), their delivery records, attempt-log entries and outbox entries."""

from __future__ import annotations

from collections import Counter
from typing import cast

import redis

from incidents.archive.daily import DELIVERIES, EVENTS
from incidents.archive.records import event_record
from incidents.delivery.lanes import Delivery, DeliveryState
from incidents.retention.needed import Frontier
from incidents.retention.removal import (
    Removal,
    attempt_record,
    delivery_record,
    incident_of,
    oldest_run,
    sequences_of,
    stream_id,
)
from incidents.store import keys
from incidents.store.events import read_events, stored_event

EVENTS_PER_STEP = 200
DELIVERIES_PER_STEP = 1000
ATTEMPTS_PER_STEP = 200  # attempt-log entries looked at per subscription per step
_UNFINISHED = {DeliveryState.PENDING, DeliveryState.RETRYING}


class EventRemoval(Removal):
    def events(
        self, space: keys.Keyspace, cutoff: float, highest: int, removed: Counter[str]
    ) -> None:
        """Events of ``space`` up to ``highest`` older than ``cutoff``, in sequence order."""
        swept = int(cast(bytes | None, self.client.get(space.SWEPT_UP_TO)) or 0)
        seqs = sequences_of(space, swept, highest, EVENTS_PER_STEP)
        if not seqs:
            return
        raws = read_events(self.client, seqs, self.layout)
        done, expired, whole = swept, [], []
        for seq, raw in zip(seqs, raws, strict=True):
            if raw is not None:
                stored = stored_event(raw)
                if stored.ingested_at.timestamp() > cutoff:
                    break
                expired.append(stored)
                if not incident_of(stored):  # one on a timeline stays with its incident
                    whole.append(stored)
            done = seq
        self.archived(EVENTS, [event_record(s) for s in whole])
        kept = [s for s in expired if incident_of(s)]
        with self.pipeline() as pipe:
            self.forget_events(pipe, space, whole)
            for s in kept:
                self.unindex(pipe, space, s)
            pipe.set(space.SWEPT_UP_TO, done)
            answers = pipe.execute()
        forgotten = answers[: 2 * len(whole)]
        removed["event"] += sum(forgotten[0::2])
        removed["dedup"] += sum(forgotten[1::2]) + sum(answers[len(forgotten) : -1])

    def deliveries(self, space: keys.Keyspace, removed: Counter[str]) -> None:
        """Delivery records of the events of ``space`` its cursor has passed, once finished,
        a bucket of sequences at a time."""
        swept = int(cast(bytes | None, self.client.get(space.SWEPT_UP_TO)) or 0)
        reached = space.delivery_bucket(swept)  # the bucket the cursor is in
        found = self.client.zrangebyscore(space.DELIVERY_BUCKETS, "-inf", reached, start=0, num=16)
        budget = DELIVERIES_PER_STEP
        for bucket in (int(b) for b in cast(list[bytes], found)):
            if budget <= 0:
                return
            key = space.deliveries(bucket)
            budget -= self.bucket(space, key, swept, removed)
            # Out of the list first, then back if anything is left (or was queued meanwhile).
            self.client.zrem(space.DELIVERY_BUCKETS, bucket)
            if self.client.exists(key):
                self.client.zadd(space.DELIVERY_BUCKETS, {str(bucket): bucket})

    def bucket(self, space: keys.Keyspace, key: str, swept: int, removed: Counter[str]) -> int:
        """Remove the finished records of a bucket's events up to ``swept``; how many."""
        rows = cast(dict[bytes, bytes], self.client.hgetall(key))
        records = [Delivery.decoded(i.decode(), raw) for i, raw in rows.items()]
        # A redriven dead letter is queued again under its id: it waits for its delivery.
        done = [r for r in records if r.seq <= swept and r.state not in _UNFINISHED]
        if not done:
            return 0
        self.archived(DELIVERIES, [delivery_record(r) for r in done])
        finished = [r.id for r in done]
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hdel(key, *finished)
            pipe.zrem(space.DEAD_LETTERS, *finished)
            deleted, dead = pipe.execute()
        removed["delivery"] += int(deleted)
        removed["dead_letter"] += int(dead)
        return len(finished)

    def attempts(self, space: keys.Keyspace, cutoff: float, removed: Counter[str]) -> None:
        """Attempt-log entries of ``space`` older than ``cutoff`` (the oldest are at each
        log's tail)."""
        subs = sorted(cast(bytes, s).decode() for s in self.client.smembers(keys.SUBSCRIPTIONS))
        for sub in subs:
            key = space.attempts(sub)
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    # A log written meanwhile is left for the next step.
                    pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    tail = cast(list[bytes], pipe.lrange(key, -ATTEMPTS_PER_STEP, -1))
                    n = oldest_run(tail, cutoff)
                    old = tail[len(tail) - n :][::-1]  # oldest first
                    if not old:
                        continue
                    self.archived(DELIVERIES, [attempt_record(sub, e) for e in old])
                    pipe.multi()
                    pipe.ltrim(key, 0, -(len(old) + 1))
                    pipe.execute()
                except redis.exceptions.WatchError:
                    continue
            removed["attempt"] += len(old)

    def stream(
        self, space: keys.Keyspace, cutoff: float, frontier: Frontier, removed: Counter[str]
    ) -> None:
        """Outbox entries of ``space`` older than ``cutoff``, never one not routed yet."""
        minid = f"{int(cutoff * 1000)}-0"
        if frontier.entry_id is not None and stream_id(frontier.entry_id) < stream_id(minid):
            minid = frontier.entry_id
        trimmed = self.client.xtrim(space.OUTBOX, minid=minid, approximate=False)
        removed["stream"] += int(trimmed)
