"""``incidents export``: what a gateway's Redis holds, as CloudEvents JSON Lines
(``archive.records``), the format the archive is written in and ``incidents import`` reads.

It writes the stored events in sequence order (those accepted between ``since`` and
``until``, or those of one incident's timeline), then the current documents of the incidents
(with their records in other systems) and alerts. Reads go in bounded batches: a running
gateway goes on while it exports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import redis

from incidents.archive.records import ALERT_TYPE, INCIDENT_TYPE, event_record, snapshot
from incidents.model.alert import Alert
from incidents.model.cloudevent import StoredEvent
from incidents.store import keys
from incidents.store.events import read_events, stored_event

BATCH = 500


@dataclass(frozen=True)
class Selection:
    """What to export: events accepted in ``[since, until)``, of one incident if named."""

    since: datetime | None = None
    until: datetime | None = None
    incident: str | None = None

    def takes(self, stored: StoredEvent) -> bool:
        at = stored.ingested_at
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)


def export_records(
    client: redis.Redis, selection: Selection, layout: keys.Partitions = keys.ONE
) -> Iterator[dict[str, Any]]:
    """Every record of the selection, events first (in sequence order, the partitions'
    merged), then documents (each partition's)."""
    if selection.incident is not None:
        timeline = layout.of_incident(selection.incident).timeline(selection.incident)
        members = cast(list[bytes], client.zrange(timeline, 0, -1))
        sequences: list[int] = [int(m) for m in members]
        incidents = [selection.incident]
        alert_keys: list[str] = []
    else:
        sequences, incidents, alert_keys = [], [], []
        for space in layout:
            last = int(cast(bytes | None, client.get(space.SEQUENCE)) or 0)
            sequences += [layout.sequence(space, counter) for counter in range(1, last + 1)]
            index = cast(list[bytes], client.zrange(space.INCIDENT_INDEX, 0, -1))
            incidents += [m.decode() for m in index]
            alert_keys += [
                m.decode() for m in cast(list[bytes], client.zrange(space.ALERT_INDEX, 0, -1))
            ]
        sequences.sort()
    for start in range(0, len(sequences), BATCH):
        chunk = sequences[start : start + BATCH]
        for raw in read_events(client, chunk, layout):
            if raw is not None and selection.takes(stored := stored_event(raw)):
                yield event_record(stored)
    for start in range(0, len(incidents), BATCH):
        yield from _incidents(client, incidents[start : start + BATCH], layout)
    for start in range(0, len(alert_keys), BATCH):
        yield from _alerts(client, alert_keys[start : start + BATCH])


def _incidents(
    client: redis.Redis, ids: list[str], layout: keys.Partitions
) -> Iterator[dict[str, Any]]:
    with client.pipeline(transaction=False) as pipe:
        for incident_id in ids:
            space = layout.of_incident(incident_id)
            pipe.hmget(space.incident(incident_id), ["v", "j"])
            pipe.hgetall(space.incident_refs(incident_id))
        rows = pipe.execute()
    for incident_id, (version, raw), refs in zip(ids, rows[::2], rows[1::2], strict=True):
        if raw is None:
            continue
        document = orjson.loads(raw)
        data = {"incident": document, "refs": {k.decode(): v.decode() for k, v in refs.items()}}
        at = _time(document.get("updated_at"))
        yield snapshot(INCIDENT_TYPE, incident_id, at, data, int(version or 0))


def _alerts(client: redis.Redis, doc_keys: list[str]) -> Iterator[dict[str, Any]]:
    with client.pipeline(transaction=False) as pipe:
        for key in doc_keys:
            pipe.hmget(key, ["v", "j"])
        rows = pipe.execute()
    for version, raw in rows:
        if raw is None:
            continue
        alert = Alert.from_dict(orjson.loads(raw))
        at = _time(alert.last_seen)
        data = {"alert": alert.to_dict()}
        yield snapshot(ALERT_TYPE, f"{alert.tenant}/{alert.key}", at, data, int(version or 0))


def _time(raw: object) -> datetime:
    if isinstance(raw, str):
        try:
            found = datetime.fromisoformat(raw)
        except ValueError:
            return datetime.now(UTC)
        return found if found.tzinfo is not None else found.replace(tzinfo=UTC)
    return datetime.now(UTC)
