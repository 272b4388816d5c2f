"""The event store: accepted events, kept durably in Redis, with their gateway sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Protocol, cast

import orjson
import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from incidents.errors import StoreUnavailable
from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.model.plan import NO_PLAN, Plan
from incidents.model.types import Extension
from incidents.store import event_index, keys
from incidents.store.redis import guarded
from incidents.store.scripts import load_script

# The key names the acceptance script writes to.
_ACCEPT_KEYS = {
    "seq": keys.SEQUENCE,
    "outbox": keys.OUTBOX,
    "events": keys.EVENTS_PREFIX,
    "bucket": keys.EVENT_BUCKET,
}
# Requests committed by one script call at most (bounds how long Redis is busy with one call).
MAX_GROUPS_PER_CALL = 128


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


class EventStore:
    """``min_replicas``: an accepted event is answered only once that many replicas confirm
    it (Redis ``WAIT``, up to ``replica_timeout_ms``); fewer: StoreUnavailable, the event kept.
    """

    def __init__(
        self, redis: aioredis.Redis, min_replicas: int = 0, replica_timeout_ms: int = 500
    ) -> None:
        self.redis = redis
        self.min_replicas, self.replica_timeout_ms = min_replicas, replica_timeout_ms
        self._accept = redis.register_script(load_script("accept"))
        self._waiting: list[
            tuple[list[dict[str, Any]], list[bytes], asyncio.Future[list[Any]]]
        ] = []
        self._flusher: asyncio.Task[None] | None = None

    async def next_incident_id(self) -> str:
        async with guarded("assigning an incident id"):
            n = await self.redis.incr(keys.INCIDENT_COUNTER)
        return f"INC-{n}"

    async def existing(self, events: Sequence[CloudEvent]) -> list[int | None]:
        """The stored sequence of each event's (source, id), or None for new ones."""
        if not events:
            return []
        async with guarded("checking for duplicates"), self.redis.pipeline(False) as pipe:
            for e in events:
                pipe.hmget(keys.event_ids(e.id), [e.id, event_index.other_field(e.id, e.source)])
            raw = await pipe.execute()
        pairs = cast(list[list[bytes | None]], raw)
        found = [
            event_index.found(v[0], v[1], e.source) for e, v in zip(events, pairs, strict=True)
        ]
        return [f.sequence if f else None for f in found]

    async def accept(self, drafts: Sequence[Draft], now: datetime) -> list[Accepted]:
        """Store every draft or none. Raises VersionConflict, or StoreUnavailable.

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
        script call (up to MAX_GROUPS_PER_CALL requests per call). One answer per request: its
        results, or the VersionConflict or StoreUnavailable that refused it. A later request
        sees what the earlier ones stored, so it may be planned on top of them."""
        ingested = microseconds(now)
        loop = asyncio.get_running_loop()
        futures = [self._enqueue(loop, drafts, ingested) if drafts else None for drafts in requests]
        answers: list[list[Accepted] | Exception] = []
        for drafts, future in zip(requests, futures, strict=True):
            if future is None:
                answers.append([])
                continue
            try:
                reply = await future
            except Exception as exc:  # StoreUnavailable, short of replicas: this request's
                answers.append(exc)
                continue
            answers.append(_decode(drafts, reply))
        return answers

    def _enqueue(
        self, loop: asyncio.AbstractEventLoop, drafts: Sequence[Draft], ingested: int
    ) -> asyncio.Future[list[Any]]:
        """Queue one request's drafts for the next script call; requests queued together keep
        their order. Its group of the script's JSON request, and the strings that go beside
        the request as they are stored: each event's tail, then its documents' JSON."""
        group: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for d in drafts:
            event = d.event
            incident = d.incident_id
            group.append(
                {
                    "ids": keys.event_ids(event.id),
                    "id": event.id,
                    "source": event.source,
                    "incident": incident,
                    "timeline": keys.timeline(incident) if incident else "",
                    "docs": [{"key": w.key, "expect": w.expect} for w in d.writes],
                    "index": [
                        {"key": x.key, "score": x.score, "member": x.member} for x in d.index
                    ],
                }
            )
            blobs.append(self._tail(d, ingested))
            blobs.extend(w.encoded for w in d.writes)
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._waiting = []  # anything left belongs to a loop that is gone
            self._flusher = loop.create_task(self._flush())
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((group, blobs, future))
        return future

    async def _flush(self) -> None:
        """Send what is waiting, one script call at a time, until nothing is."""
        while self._waiting:
            batch = self._waiting[:MAX_GROUPS_PER_CALL]
            del self._waiting[:MAX_GROUPS_PER_CALL]
            payload = orjson.dumps({**_ACCEPT_KEYS, "groups": [group for group, _, _ in batch]})
            args = [payload]
            for _, blobs, _ in batch:
                args.extend(blobs)
            try:
                async with guarded("storing events"):
                    replies, confirmed = await self._store(args)
            except Exception as exc:  # every waiting request hears it (503 or the error)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled with the loop: nobody is left to answer
                for _, _, future in batch:
                    future.cancel()
                raise
            short = confirmed < self.min_replicas
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if short and _head(reply) != "conflict":  # a conflict wrote nothing
                    future.set_exception(self._short_of_replicas(confirmed))
                else:
                    future.set_result(reply)

    async def _store(self, args: list[bytes]) -> tuple[list[Any], int]:
        """Run the acceptance script; with ``min_replicas``, then ``WAIT`` on the same
        connection (WAIT counts the replicas that have this connection's writes)."""
        if not self.min_replicas:
            return await self._accept(args=args), 0
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._accept.sha, 0, *args)
                pipe.wait(self.min_replicas, self.replica_timeout_ms)
                replies, confirmed = await pipe.execute(raise_on_error=False)
            if isinstance(replies, NoScriptError):  # a fresh primary (after a failover, say)
                await self.redis.script_load(self._accept.script)
                continue
            if isinstance(replies, BaseException):
                raise replies
            if isinstance(confirmed, ResponseError):
                # "WAIT cannot be used with replica instances": this server was demoted while
                # the script ran (a failover under way); the client finds the new primary.
                raise StoreUnavailable(
                    f"the Redis server stopped being the primary ({confirmed}); retry",
                    retry_after=1,
                ) from confirmed
            if isinstance(confirmed, BaseException):
                raise confirmed
            return replies, int(confirmed)
        raise StoreUnavailable("Redis lost the acceptance script twice; retry", retry_after=1)

    def _short_of_replicas(self, confirmed: int) -> StoreUnavailable:
        return StoreUnavailable(
            f"the event is stored on the Redis primary, but {confirmed} of the"
            f" {self.min_replicas} replicas INCIDENTS_MIN_REPLICAS asks for confirmed it within"
            f" {self.replica_timeout_ms} ms; retry (a retry is answered 200 as a duplicate)",
            retry_after=1,
        )

    @staticmethod
    def _tail(draft: Draft, ingested: int) -> bytes:
        return stored_tail(draft.event.to_dict(), ingested, draft.principal, draft.plan.to_dict())

    async def get(self, sequence: int) -> StoredEvent | None:
        async with guarded("reading an event"):
            raw = await self.redis.hget(keys.event_hash(sequence), str(sequence))
        return stored_event(raw) if raw else None

    async def get_many(self, sequences: Sequence[int]) -> list[StoredEvent]:
        """The events of these sequences that are stored, in the order asked."""
        async with guarded("reading events"):
            raws = await read_events_async(self.redis, sequences)
        return [stored_event(r) for r in raws if r]

    async def find(self, event_id: str, source: str | None = None) -> list[StoredEvent]:
        """Stored events with this CloudEvents id (from any source unless one is named)."""
        bucket = keys.event_ids(event_id)
        async with guarded("looking up an event"):
            if source is not None:
                fields = [event_id, event_index.other_field(event_id, source)]
                first, other = cast(list[bytes | None], await self.redis.hmget(bucket, fields))
                one = event_index.found(first, other, source)
                found = [one] if one is not None else []
            else:
                fields = [event_id, event_index.count_field(event_id)]
                first, count = cast(list[bytes | None], await self.redis.hmget(bucket, fields))
                found = [r for r in [event_index.decode(first)] if r is not None]
                if count is not None and int(count) > 0:  # sources share the id
                    pattern = event_index.others_pattern(event_id)
                    async for field, value in self.redis.hscan_iter(bucket, match=pattern):
                        if field != event_index.count_field(event_id).encode():
                            found += [r for r in [event_index.decode(value)] if r is not None]
        return await self.get_many(sorted(r.sequence for r in found))

    async def timeline(
        self, incident_id: str, after: int = 0, limit: int = 1000
    ) -> list[StoredEvent]:
        """An incident's events in the order the gateway accepted them."""
        async with guarded("reading a timeline"):
            seqs = await self.redis.zrangebyscore(
                keys.timeline(incident_id), f"({after}", "+inf", start=0, num=limit
            )
        return await self.get_many([int(cast(bytes, s)) for s in seqs])

    async def recent(self, after: str | None = None, limit: int = 100) -> list[RecentEvent]:
        """Up to ``limit`` events of the retained outbox stream accepted after the entry
        ``after`` (None: from the oldest kept), oldest first: what a live stream tails. The
        stream keeps about INCIDENTS_STREAM_RETENTION entries (more while routing lags)."""
        start = "-" if after is None else f"({after}"
        async with guarded("reading recent events"):
            raw = await self.redis.xrange(keys.OUTBOX, start, "+", count=limit)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw or [])
        ids = [(i.decode(), int(f[b"seq"])) for i, f in entries if f and b"seq" in f]
        found = {s.sequence: s for s in await self.get_many([seq for _, seq in ids])}
        return [RecentEvent(i, found[seq]) for i, seq in ids if seq in found]

    async def last_sequence(self) -> int:
        async with guarded("reading the sequence"):
            raw = await self.redis.get(keys.SEQUENCE)
        return int(cast(bytes, raw)) if raw else 0


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def microseconds(when: datetime) -> int:
    """A time as whole microseconds since the Unix epoch (a naive time is read as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MICROSECOND


def stored_tail(
    event: dict[str, Any], ingested: int, principal: str = "", meta: dict[str, Any] | None = None
) -> bytes:
    """An event as kept in its bucket, after '[<sequence>' (which the storing script
    prepends): ``[sequence, ingest time in microseconds since the epoch, principal, event]``,
    and the plan (``meta``) last when there is one (most events have none). The event's
    ``specversion`` is left out when it is its first attribute and ``"1.0"`` (every event the
    gateway accepts), and the names of the attributes in ``SHORT_NAMES`` are kept as their
    letter: ``stored_event`` puts both back, in place, so the event reads back, and is
    delivered, byte for byte the same."""
    items = list(event.items())
    if items and items[0] == _SPECVERSION:
        del items[0]
    if not _LONG_NAMES.keys().isdisjoint(event):
        raise ValueError("an attribute name is one upper-case letter: not a CloudEvents name")
    kept: list[Any] = [ingested, principal, {SHORT_NAMES.get(k, k): v for k, v in items}]
    if meta:
        kept.append(meta)
    return b"," + orjson.dumps(kept)[1:]


_SPECVERSION = ("specversion", "1.0")
# The names of the context attributes, the gateway's extensions and the data members, as a
# stored event keeps them: one upper-case letter, which no CloudEvents attribute name can be
# (they are lower-case letters and digits). Stored events depend on this table: a letter is
# never given another meaning.
SHORT_NAMES = {
    "id": "I",
    "source": "S",
    "type": "T",
    "time": "M",
    "subject": "U",
    "datacontenttype": "C",
    "dataschema": "D",
    "data": "A",
    "data_base64": "B",
    "imincidentid": "N",
    "imactor": "O",
    "imtags": "G",
    "imcorrelationkey": "K",
    "imdataclass": "L",
    "imvisibility": "V",
    "dataclassification": "F",
    "imtenant": "E",
    "imredacted": "R",
    "imseverity": "Y",
    "imstatus": "X",
    "imservice": "Z",
}
_LONG_NAMES = {short: name for name, short in SHORT_NAMES.items()}


def stored_event(raw: bytes | str) -> StoredEvent:
    """An event as kept in its bucket (for callers that read it along with other keys in
    one round trip)."""
    seq, ingested, principal, kept, *meta = orjson.loads(raw)
    event = {_LONG_NAMES.get(k, k): v for k, v in kept.items()}
    if _SPECVERSION[0] not in event:
        event = {_SPECVERSION[0]: _SPECVERSION[1], **event}
    return StoredEvent(
        event=CloudEvent.from_dict(event),
        sequence=int(seq),
        ingested_at=_EPOCH + int(ingested) * _MICROSECOND,
        principal=str(principal),
        plan=Plan.from_dict(meta[0] if meta else None),
    )


def _decode(drafts: Sequence[Draft], reply: list[Any]) -> list[Accepted] | Exception:
    if _head(reply) == "conflict":
        return VersionConflict(int(reply[1]) - 1, reply[2].decode(), int(reply[3]))
    out = []
    for draft, item in zip(drafts, reply[1:], strict=True):
        kind, seq, *rest = item.decode().split(" ", 2)
        incident = rest[0] if rest and rest[0] else None
        out.append(Accepted(draft.event.id, draft.event.source, int(seq), kind == "dup", incident))
    return out


def _head(reply: list[Any]) -> str:
    return reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
