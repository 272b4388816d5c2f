"""What every kind of removal shares: the client, the archive written first, and the
conversions of what is removed into archive records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
import redis.cluster

from incidents.archive.daily import Archive
from incidents.archive.records import ATTEMPT_TYPE, DELIVERY_TYPE, snapshot
from incidents.delivery.lanes import Delivery
from incidents.model.cloudevent import StoredEvent
from incidents.model.types import Extension
from incidents.store import keys
from incidents.store.scripts import load_script


class Removal:
    """Removal from one partition at a time (``space``): every script call and every pipeline
    of a method is on that partition's keys, plus, for channel state, global keys outside
    any script."""

    def __init__(
        self, client: redis.Redis, archive: Archive | None, layout: keys.Partitions = keys.ONE
    ) -> None:
        self.client = client
        self.archive = archive
        self.layout = layout
        self._forget = client.register_script(load_script("forget"))
        self._unindex = client.register_script(load_script("unindex"))

    def pipeline(self) -> Any:
        """A pipeline (not a transaction) that ``forget_events`` and ``unindex`` may queue
        on. A cluster's pipeline does not load the scripts it runs (a plain one does): they
        are loaded on every primary first, which also covers a primary new since a failover."""
        if isinstance(self.client, redis.cluster.RedisCluster):
            self.client.script_load(self._unindex.script)
        return self.client.pipeline(transaction=False)

    def archived(self, kind: str, records: Sequence[dict[str, Any]]) -> None:
        if self.archive is not None and records:
            self.archive.append(kind, records)

    def forget_events(self, pipe: Any, space: keys.Keyspace, events: Sequence[StoredEvent]) -> None:
        """Queue the removal of events of ``space``: two commands each (the event, and its
        entry in the id index, which is its dedup key too), each answering 1 if it removed
        something."""
        for s in events:
            pipe.hdel(space.event_hash(s.sequence), s.sequence)
            self.unindex(pipe, space, s)

    def unindex(self, pipe: Any, space: keys.Keyspace, stored: StoredEvent) -> None:
        """Queue taking the event out of the id index of ``space`` (its dedup check goes
        with it)."""
        event = stored.event
        bucket = space.event_ids(event.id)
        self._unindex(keys=[bucket], args=[event.id, event.source], client=pipe)


def sequences_of(space: keys.Keyspace, after: int, upto: int, most: int) -> list[int]:
    """The sequences of ``space`` above ``after`` up to ``upto``, at most ``most`` of them, in
    order (one partition's are ``p``, ``p + P``, ``p + 2P``, ...: ``Partitions.sequence``)."""
    step = space.count
    first = after + 1 + (space.partition - (after + 1)) % step
    return list(range(first, upto + 1, step)[:most])


def incident_of(stored: StoredEvent) -> str:
    value = stored.event.get(Extension.INCIDENT_ID)
    return str(value) if value else ""


def delivery_record(found: Delivery) -> dict[str, Any]:
    at = datetime.fromtimestamp(found.created or 0, UTC)
    return snapshot(DELIVERY_TYPE, found.id, at, {"delivery": found.to_dict()})


def attempt_time(entry: bytes) -> float:
    when = parse_time(orjson.loads(entry).get("time"))
    return when.timestamp() if when is not None else 0.0


def oldest_run(tail: list[bytes], cutoff: float) -> int:
    """How many entries at the very end of the log are older than ``cutoff``."""
    n = 0
    for entry in reversed(tail):
        if attempt_time(entry) >= cutoff:
            break
        n += 1
    return n


def attempt_record(sub: str, entry: bytes) -> dict[str, Any]:
    found = orjson.loads(entry)
    at = parse_time(found.get("time")) or datetime.now(UTC)
    record_id = f"{found.get('delivery')}/{found.get('attempt')}/{found.get('outcome')}"
    return snapshot(ATTEMPT_TYPE, record_id, at, {"subscription": sub, "attempt": found})


def parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        found = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
