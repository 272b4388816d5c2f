"""The event store: accepted events, kept durably in Redis, with their gateway sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol, cast

import orjson
import redis
import redis.asyncio as aioredis

from incidents.errors import StoreUnavailable
from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.model.plan import NO_PLAN, Plan
from incidents.model.types import Extension
from incidents.store import event_index, keys
from incidents.store.event_commits import PartitionCommits, head
from incidents.store.redis import guarded
from incidents.store.scripts import load_script

# The stored form of an event, importable from here as it always was.
from incidents.store.stored_form import SHORT_NAMES as SHORT_NAMES
from incidents.store.stored_form import microseconds as microseconds
from incidents.store.stored_form import stored_event as stored_event
from incidents.store.stored_form import stored_tail as stored_tail


@dataclass(frozen=True)
class VersionedWrite:
    """A document (incident, alert) written with the event only if its version is unchanged."""

    key: str
    expect: int
    document: dict[str, Any]

    @cached_property
    def encoded(self) -> bytes:
        """The document as stored (JSON), encoded once however many times it is used."""
        return orjson.dumps(self.document)


@dataclass(frozen=True)
class IndexAdd:
    key: str
    score: float
    member: str


@dataclass(frozen=True)
class Draft:
    """An event ready to be stored, with the writes that must happen atomically with it."""

    event: CloudEvent
    principal: str = ""
    writes: Sequence[VersionedWrite] = ()
    index: Sequence[IndexAdd] = ()
    plan: Plan = NO_PLAN  # stored as "meta"

    @property
    def incident_id(self) -> str:
        value = self.event.get(Extension.INCIDENT_ID)
        return str(value) if value is not None else ""


@dataclass(frozen=True)
class Accepted:
    id: str
    source: str
    sequence: int
    duplicate: bool
    incident_id: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "source": self.source, "sequence": self.sequence}
        if self.incident_id:
            out["incident"] = self.incident_id
        if self.duplicate:
            out["duplicate"] = True
        return out


@dataclass(frozen=True)
class RecentEvent:
    """An event read from the retained outbox stream, with its stream entry id."""

    stream_id: str  # pass it back as ``after`` to read on from here
    stored: StoredEvent


class VersionConflict(Exception):
    """A versioned document changed between read and write; the caller re-reads and retries."""

    def __init__(self, index: int, key: str, current: int) -> None:
        super().__init__(f"{key} is at version {current} (event {index})")
        self.index, self.key, self.current = index, key, current

    def moved(self, index: int) -> VersionConflict:
        """The same conflict, of the event at ``index`` of the whole request."""
        return VersionConflict(index, self.key, self.current)


class EventStore:
    """``min_replicas``: an accepted event is answered only once that many replicas confirm
    it (Redis ``WAIT``, up to ``replica_timeout_ms``); fewer: StoreUnavailable, the event kept.
    ``layout``: the deployment's partitions; each event is stored in its own
    (``partition_of``), with one script call per partition a call's events fall into.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        min_replicas: int = 0,
        replica_timeout_ms: int = 500,
        layout: keys.Partitions = keys.ONE,
    ) -> None:
        self.redis = redis
        self.layout = layout
        self.min_replicas, self.replica_timeout_ms = min_replicas, replica_timeout_ms
        script = redis.register_script(load_script("accept"))
        self._commits = [
            PartitionCommits(redis, script, space, min_replicas, replica_timeout_ms)
            for space in layout
        ]

    def partition_of(self, event: CloudEvent) -> keys.Keyspace:
        """The partition an event is stored in, from what it carries (``of_stored``): its
        incident's, else its alert's, else its own by source and id."""
        incident = event.get(Extension.INCIDENT_ID)
        correlation_key = event.get(Extension.CORRELATION_KEY)
        return self.layout.of_stored(
            str(incident) if incident else None,
            str(event.get(Extension.TENANT) or ""),
            None if correlation_key is None else str(correlation_key),
            event.source,
            event.id,
        )

    async def next_incident_id(self, space: keys.Keyspace | None = None) -> str:
        """A new gateway incident id, numbered for ``space`` (the only partition when None):
        ``layout.of_incident`` of it is ``space``."""
        space = space if space is not None else self.layout.spaces[0]
        async with guarded("assigning an incident id"):
            counter = await self.redis.incr(space.INCIDENT_COUNTER)
        return f"INC-{self.layout.incident_number(space, int(counter))}"

    async def existing(self, events: Sequence[CloudEvent]) -> list[int | None]:
        """The stored sequence of each event's (source, id), or None for new ones (looked up
        in the partition the event is stored in)."""
        if not events:
            return []
        async with guarded("checking for duplicates"), self.redis.pipeline(False) as pipe:
            for e in events:
                bucket = self.partition_of(e).event_ids(e.id)
                pipe.hmget(bucket, [e.id, event_index.other_field(e.id, e.source)])
            raw = await pipe.execute()
        pairs = cast(list[list[bytes | None]], raw)
        found = [
            event_index.found(v[0], v[1], e.source) for e, v in zip(events, pairs, strict=True)
        ]
        return [f.sequence if f else None for f in found]

    async def accept(self, drafts: Sequence[Draft], now: datetime) -> list[Accepted]:
        """Store every draft or none (of each partition they fall into). Raises
        VersionConflict, or StoreUnavailable.

        Calls made while an earlier one is on its way to Redis are committed together in
        the next script call (group commit): each call stays all-or-nothing on its own, and
        one Redis round trip serves every request that arrived meanwhile."""
        (answer,) = await self.accept_each([drafts], now)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def accept_each(
        self, requests: Sequence[Sequence[Draft]], now: datetime
    ) -> list[list[Accepted] | Exception]:
        """Store each request's drafts whole or not at all, in the order given, in the same
        script call (up to ``event_commits.MAX_GROUPS_PER_CALL`` requests per call). One
        answer per request: its results, or the VersionConflict or StoreUnavailable that
        refused it. A later request sees what the earlier ones stored, so it may be planned
        on top of them.

        A request whose events fall into several partitions is stored with one script call
        per partition, each part whole or not at all: when one part is refused, the parts
        stored stay stored (a retry finds them as duplicates)."""
        ingested = microseconds(now)
        loop = asyncio.get_running_loop()
        queued = [self._enqueue(loop, drafts, ingested) for drafts in requests]
        answers: list[list[Accepted] | Exception] = []
        for drafts, parts in zip(requests, queued, strict=True):
            if len(parts) == 1:  # one partition: the part is the whole request, in order
                try:
                    answers.append(_decode(drafts, await parts[0][1]))
                except Exception as exc:  # StoreUnavailable, short of replicas: this request's
                    answers.append(exc)
                continue
            results: list[Accepted | None] = [None] * len(drafts)
            refused: Exception | None = None
            for positions, future in parts:
                try:
                    reply = await future
                except Exception as exc:  # StoreUnavailable, short of replicas: this part's
                    refused = refused if isinstance(refused, StoreUnavailable) else exc
                    continue
                decoded = _decode([drafts[i] for i in positions], reply)
                if isinstance(decoded, VersionConflict):
                    refused = refused or decoded.moved(positions[decoded.index])
                    continue
                for i, accepted in zip(positions, decoded, strict=True):
                    results[i] = accepted
            answers.append(refused if refused is not None else [r for r in results if r])
        return answers

    def _enqueue(
        self, loop: asyncio.AbstractEventLoop, drafts: Sequence[Draft], ingested: int
    ) -> list[tuple[list[int], asyncio.Future[list[Any]]]]:
        """Queue one request's drafts, a part per partition, for the partitions' next script
        calls: each part's positions in ``drafts`` and the future of its reply."""
        if not drafts:
            return []
        if self.layout.count == 1:
            by_partition = {0: list(range(len(drafts)))}
        else:
            by_partition = {}
            for i, d in enumerate(drafts):
                by_partition.setdefault(self.partition_of(d.event).partition, []).append(i)
        parts = []
        for partition, positions in by_partition.items():
            space = self.layout.spaces[partition]
            group: list[dict[str, Any]] = []
            blobs: list[bytes] = []
            for i in positions:
                d = drafts[i]
                group.append(_request_of(d, space, self.layout.tagged))
                blobs.append(self._tail(d, ingested))
                blobs.extend(w.encoded for w in d.writes)
            parts.append((positions, self._commits[partition].enqueue(loop, group, blobs)))
        return parts

    @staticmethod
    def _tail(draft: Draft, ingested: int) -> bytes:
        return stored_tail(draft.event.to_dict(), ingested, draft.principal, draft.plan.to_dict())

    async def get(self, sequence: int) -> StoredEvent | None:
        bucket = self.layout.of_sequence(sequence).event_hash(sequence)
        async with guarded("reading an event"):
            raw = await self.redis.hget(bucket, str(sequence))
        return stored_event(raw) if raw else None

    async def get_many(self, sequences: Sequence[int]) -> list[StoredEvent]:
        """The events of these sequences that are stored, in the order asked."""
        async with guarded("reading events"):
            raws = await read_events_async(self.redis, sequences, self.layout)
        return [stored_event(r) for r in raws if r]

    async def find(self, event_id: str, source: str | None = None) -> list[StoredEvent]:
        """Stored events with this CloudEvents id (from any source unless one is named), in
        every partition's id index (one round trip, and one more per bucket where sources
        share the id)."""
        found: list[event_index.Indexed] = []
        buckets = [space.event_ids(event_id) for space in self.layout]
        if source is not None:
            fields = [event_id, event_index.other_field(event_id, source)]
        else:
            fields = [event_id, event_index.count_field(event_id)]
        async with guarded("looking up an event"):
            if len(buckets) == 1:
                rows = [await self.redis.hmget(buckets[0], fields)]
            else:
                async with self.redis.pipeline(False) as pipe:
                    for bucket in buckets:
                        pipe.hmget(bucket, fields)
                    rows = await pipe.execute()
            for bucket, row in zip(buckets, rows, strict=True):
                first, second = cast(list[bytes | None], row)
                if source is not None:
                    found += [r for r in [event_index.found(first, second, source)] if r]
                    continue
                found += [r for r in [event_index.decode(first)] if r is not None]
                if second is not None and int(second) > 0:  # sources share the id
                    found += await self._others(bucket, event_id)
        return await self.get_many(sorted(r.sequence for r in found))

    async def _others(self, bucket: str, event_id: str) -> list[event_index.Indexed]:
        """The events of the other sources that share ``event_id`` in ``bucket``."""
        found = []
        pattern = event_index.others_pattern(event_id)
        async for field, value in self.redis.hscan_iter(bucket, match=pattern):
            if field != event_index.count_field(event_id).encode():
                found += [r for r in [event_index.decode(value)] if r is not None]
        return found

    async def timeline(
        self, incident_id: str, after: int = 0, limit: int = 1000
    ) -> list[StoredEvent]:
        """An incident's events in the order the gateway accepted them."""
        key = self.layout.of_incident(incident_id).timeline(incident_id)
        async with guarded("reading a timeline"):
            seqs = await self.redis.zrangebyscore(key, f"({after}", "+inf", start=0, num=limit)
        return await self.get_many([int(cast(bytes, s)) for s in seqs])

    async def recent(self, after: str | None = None, limit: int = 100) -> list[RecentEvent]:
        """Up to ``limit`` events of the retained outbox streams accepted after the position
        ``after`` (None: from the oldest kept), oldest first: what a live stream tails. Each
        stream keeps about INCIDENTS_STREAM_RETENTION entries (more while routing lags).

        One partition: a position is the stream entry id. Several: the entry id of each
        partition's stream, joined by commas, the partitions' entries merged by their ids
        (the time each was added)."""
        if self.layout.count == 1:
            start = "-" if after is None else f"({after}"
            async with guarded("reading recent events"):
                raw = await self.redis.xrange(self.layout.spaces[0].OUTBOX, start, "+", count=limit)
            ids = [(i, seq) for i, seq in _entries(raw)]
        else:
            ids = await self._recent_merged(after, limit)
        found = {s.sequence: s for s in await self.get_many([seq for _, seq in ids])}
        return [RecentEvent(i, found[seq]) for i, seq in ids if seq in found]

    async def _recent_merged(self, after: str | None, limit: int) -> list[tuple[str, int]]:
        positions = stream_positions(after, self.layout.count)
        async with guarded("reading recent events"), self.redis.pipeline(False) as pipe:
            for space, at in zip(self.layout, positions, strict=True):
                pipe.xrange(space.OUTBOX, "-" if at == "0-0" else f"({at}", "+", count=limit)
            raws = await pipe.execute()
        merged = sorted(
            (_entry_order(i), p, i, seq) for p, raw in enumerate(raws) for i, seq in _entries(raw)
        )[:limit]
        out = []
        for _, p, entry, seq in merged:
            positions[p] = entry
            out.append((",".join(positions), seq))
        return out

    async def last_sequence(self) -> int:
        """The highest sequence stored (with several partitions, the highest of each's)."""
        return max(await self.last_sequences())

    async def last_sequences(self) -> list[int]:
        """Each partition's last sequence (0: none yet), in partition order."""
        async with guarded("reading the sequence"), self.redis.pipeline(False) as pipe:
            for space in self.layout:
                pipe.get(space.SEQUENCE)
            raws = await pipe.execute()
        return [
            self.layout.sequence(space, int(raw)) if raw else 0
            for space, raw in zip(self.layout, raws, strict=True)
        ]


def stream_positions(after: str | None, count: int) -> list[str]:
    """A position in the partitions' outbox streams (``EventStore.recent``), one entry id
    per partition ("0-0": before the first)."""
    if after is None:
        return ["0-0"] * count
    parts = after.split(",")
    if len(parts) != count:
        raise ValueError(f"not a position in {count} streams: {after!r}")
    return parts


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def _entries(raw: object) -> list[tuple[str, int]]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw or [])
    return [(i.decode(), int(f[b"seq"])) for i, f in entries if f and b"seq" in f]


def _request_of(draft: Draft, space: keys.Keyspace, tagged: bool) -> dict[str, Any]:
    """The draft's part of the acceptance script's JSON request, its keys in ``space``."""
    event = draft.event
    incident = draft.incident_id
    docs = [{"key": w.key, "expect": w.expect} for w in draft.writes]
    index = [{"key": x.key, "score": x.score, "member": x.member} for x in draft.index]
    if tagged:  # a write planned outside the event's partition is a bug, not a cross-slot call
        stray = [k["key"] for k in (*docs, *index) if not str(k["key"]).startswith(space.prefix)]
        if stray:
            raise ValueError(f"event {event.id!r} of {space!r} writes {stray[0]!r}")
    return {
        "ids": space.event_ids(event.id),
        "id": event.id,
        "source": event.source,
        "incident": incident,
        "timeline": space.timeline(incident) if incident else "",
        "docs": docs,
        "index": index,
    }


class HashReads(Protocol):
    """What ``EventReads`` queues its reads on: a pipeline, sync or asyncio."""

    def hmget(self, name: str, keys: list[int]) -> object: ...


class EventReads:
    """Reads of stored events by sequence, queued on a pipeline (sync or asyncio) with other
    commands: one ``HMGET`` per event bucket. ``found`` picks the answers out of the
    pipeline's, in the order of ``sequences`` (None for one not stored)."""

    def __init__(self, sequences: Sequence[int], layout: keys.Partitions = keys.ONE) -> None:
        self.sequences = list(sequences)
        self.buckets: dict[str, list[int]] = {}
        for seq in self.sequences:
            self.buckets.setdefault(layout.of_sequence(seq).event_hash(seq), []).append(seq)

    def queue(self, pipe: HashReads) -> None:
        """Queue the reads: one command per bucket, after whatever ``pipe`` holds so far."""
        for bucket, seqs in self.buckets.items():
            pipe.hmget(bucket, seqs)

    def found(self, answers: Sequence[object]) -> list[bytes | None]:
        """The events' JSON from the pipeline's answers: the last ``len(self.buckets)``."""
        mine = answers[len(answers) - len(self.buckets) :] if self.buckets else []
        by_seq: dict[int, bytes | None] = {}
        for seqs, raws in zip(self.buckets.values(), mine, strict=True):
            by_seq.update(zip(seqs, cast(list[bytes | None], raws), strict=True))
        return [by_seq[s] for s in self.sequences]


async def read_events_async(
    client: aioredis.Redis, sequences: Sequence[int], layout: keys.Partitions = keys.ONE
) -> list[bytes | None]:
    """The stored JSON of each sequence (None for one not stored), with an asyncio client."""
    if not sequences:
        return []
    reads = EventReads(sequences, layout)
    async with client.pipeline(transaction=False) as pipe:
        reads.queue(pipe)
        return reads.found(await pipe.execute())


def read_events(
    client: redis.Redis, sequences: Sequence[int], layout: keys.Partitions = keys.ONE
) -> list[bytes | None]:
    """The stored JSON of each sequence (None for one not stored), with a sync client."""
    if not sequences:
        return []
    reads = EventReads(sequences, layout)
    with client.pipeline(transaction=False) as pipe:
        reads.queue(pipe)
        return reads.found(pipe.execute())


def _decode(drafts: Sequence[Draft], reply: list[Any]) -> list[Accepted] | VersionConflict:
    if head(reply) == "conflict":
        return VersionConflict(int(reply[1]) - 1, reply[2].decode(), int(reply[3]))
    out = []
    for draft, item in zip(drafts, reply[1:], strict=True):
        kind, seq, *rest = item.decode().split(" ", 2)
        incident = rest[0] if rest and rest[0] else None
        out.append(Accepted(draft.event.id, draft.event.source, int(seq), kind == "dup", incident))
    return out
