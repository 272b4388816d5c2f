"""``incidents import``: export and archive files (``archive.records``) read back into a
gateway's Redis.

It is idempotent by ``(source, id)``: an event already stored is counted as a duplicate and
left alone. Everything goes to the partition it belongs to in the deployment it is read
into (``INCIDENTS_PARTITIONS``), whatever the count of the one it came from: an event to
``Partitions.of_stored`` of what it carries, an incident to its id's, an alert to its
tenant and key's. An event keeps the sequence it had when that sequence is one of its
partition's, is free, and does not come before one this import already numbered anew there
(so every timeline keeps its order); new events then continue past the highest one restored.
Else it takes the partition's next. Incidents and alerts are restored from their documents
as exported, so they read back exactly as they were, and each partition's incident counter
is raised past every restored ``INC-<n>`` of that partition, so the ids the gateway assigns
next are new; a document Redis already holds at that version or a newer one is left.
An alert whose incident falls into another partition (which only an import from a
deployment of another partition count makes) is counted as ``alerts_apart``: it goes on
without it (its events update the alert and are attached to no incident).
Nothing is fanned out again unless ``deliver``. Delivery records and attempt-log entries
(from the archive's ``deliveries`` files) are counted and skipped: they describe deliveries
made, not state to rebuild.

So an export of a one-partition deployment imported into a deployment of several is how a
deployment grows past one partition (README, *Operations*).
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from incidents.archive.records import ALERT_TYPE, INCIDENT_TYPE, Line, RecordError, parse_line
from incidents.model.alert import Alert
from incidents.model.cloudevent import StoredEvent
from incidents.model.status import IncidentStatus
from incidents.model.timestamps import parse_time
from incidents.model.types import Extension
from incidents.store import keys
from incidents.store.events import microseconds, stored_tail
from incidents.store.scripts import load_script

_NUMBERED = re.compile(r"INC-(\d+)")
GZIP_MAGIC = b"\x1f\x8b"


def lines_of(path: Path) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of an export or archive file, gzip or plain (blank ones left out)."""
    with path.open("rb") as raw:
        packed = raw.read(2) == GZIP_MAGIC
    with path.open("rb") as raw, ExitStack() as stack:
        source: Iterable[bytes] = raw
        if packed:
            source = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        for number, line in enumerate(source, 1):
            if line.strip():
                yield number, line


class Restorer:
    def __init__(
        self, client: redis.Redis, deliver: bool = False, layout: keys.Partitions = keys.ONE
    ) -> None:
        self.client = client
        self.deliver = deliver
        self.layout = layout
        self.counts: Counter[str] = Counter()
        self._event = client.register_script(load_script("restore_event"))
        self._document = client.register_script(load_script("restore_document"))
        self._raise = client.register_script(load_script("raise_to"))
        # Per partition: the highest incident counter a restored INC-<n> needs, and the
        # highest sequence this import numbered anew.
        self._counters: dict[int, int] = {}
        self._renumbered: dict[int, int] = {}

    def restore(self, lines: Iterable[Line]) -> Counter[str]:
        """Restore every line; the counts by outcome (``events``, ``duplicates``, ...)."""
        for line in lines:
            if line.stored is not None:
                self._restore_event(line.stored)
            elif line.kind == INCIDENT_TYPE and line.data is not None:
                self._restore_incident(line.data, line.version)
            elif line.kind == ALERT_TYPE and line.data is not None:
                self._restore_alert(line.data, line.version)
            else:
                self.counts["skipped"] += 1
        for partition, counter in sorted(self._counters.items()):
            space = self.layout.spaces[partition]
            self._raise(keys=[space.INCIDENT_COUNTER], args=[counter])
        return self.counts

    def _restore_event(self, stored: StoredEvent) -> None:
        event = stored.event
        incident = str(event.get(Extension.INCIDENT_ID) or "")
        key = event.get(Extension.CORRELATION_KEY)
        tenant = str(event.get(Extension.TENANT) or "")
        space = self.layout.of_stored(
            incident, tenant, None if key is None else str(key), event.source, event.id
        )
        request = {
            "ids": space.event_ids(event.id),
            "id": event.id,
            "source": event.source,
            "incident": incident,
            "timeline": space.timeline(incident) if incident else "",
            "sequence": stored.sequence,
            "deliver": self.deliver,
            "events": space.EVENTS_PREFIX,
            "bucket": space.event_bucket_size,
            "count": space.count,
            "partition": space.partition,
            "after": self._renumbered.get(space.partition, 0),
        }
        tail = stored_tail(
            event.to_dict(),
            microseconds(stored.ingested_at),
            stored.principal,
            stored.plan.to_dict(),
        )
        kind, value = self._event(
            keys=[space.SEQUENCE, space.OUTBOX, space.SWEPT_UP_TO],
            args=[orjson.dumps(request), tail],
        )
        if kind == b"dup":
            self.counts["duplicates"] += 1
            return
        self.counts["events"] += 1
        if int(value) != stored.sequence:
            self.counts["renumbered"] += 1
            self._renumbered[space.partition] = int(value)
        self._note_incident(incident)

    def _restore_incident(self, data: Any, version: int) -> None:
        document, refs = data.get("incident"), data.get("refs") or {}
        if not isinstance(document, dict) or not document.get("id"):
            raise RecordError("an im.gateway.incident record without an incident document")
        incident_id = str(document["id"])
        space = self.layout.of_incident(incident_id)
        written = self._document(
            keys=[space.incident(incident_id)], args=[version or 1, orjson.dumps(document)]
        )
        self.counts["incidents" if int(written) else "incidents_unchanged"] += 1
        self._note_incident(incident_id)
        with self.client.pipeline(transaction=False) as pipe:
            declared = _timestamp(document.get("declared_at"))
            if declared is not None:
                pipe.zadd(space.INCIDENT_INDEX, {incident_id: declared})
            updated = _timestamp(document.get("updated_at"))
            if document.get("status") == IncidentStatus.CLOSED.value and updated is not None:
                pipe.zadd(space.CLOSED_INCIDENTS, {incident_id: updated})
            if refs:
                pipe.hset(space.incident_refs(incident_id), mapping=refs)
            pipe.execute()

    def _restore_alert(self, data: Any, version: int) -> None:
        raw = data.get("alert")
        if not isinstance(raw, dict):
            raise RecordError("an im.gateway.alert record without an alert document")
        alert = Alert.from_dict(raw)
        space = self.layout.of_alert(alert.tenant, alert.key)
        key = space.alert(alert.tenant, alert.key)
        written = self._document(keys=[key], args=[version or 1, orjson.dumps(raw)])
        self.counts["alerts" if int(written) else "alerts_unchanged"] += 1
        if alert.incident and self.layout.of_incident(alert.incident) is not space:
            # Only from a deployment of another partition count: the gateway declares an
            # alert's incident in the alert's partition.
            self.counts["alerts_apart"] += 1
        with self.client.pipeline(transaction=False) as pipe:
            seen = _timestamp(alert.last_seen)
            if seen is not None:
                pipe.zadd(space.ALERT_INDEX, {key: seen})
            resolved = _timestamp(alert.resolved_at)
            if not alert.is_open and resolved is not None:
                pipe.zadd(space.RESOLVED_ALERTS, {key: resolved})
            pipe.execute()

    def _note_incident(self, incident_id: str) -> None:
        """Keep the gateway from assigning ``INC-<n>`` again: the counter of the partition
        that numbers ``n`` (``Partitions.incident_number``) must reach it."""
        found = _NUMBERED.fullmatch(incident_id)
        if found and int(found[1]) >= 1:
            n, count = int(found[1]), self.layout.count
            partition, counter = (n - 1) % count, (n - 1) // count + 1
            self._counters[partition] = max(self._counters.get(partition, 0), counter)


def read_files(paths: Iterable[Path]) -> Iterator[Line]:
    """Every line of the files, parsed; RecordError names the file and line of a bad one."""
    for path in paths:
        for number, raw in lines_of(path):
            try:
                yield parse_line(raw, number)
            except RecordError as exc:
                raise RecordError(f"{path}: {exc}") from None


def _timestamp(raw: object) -> float | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        when: datetime = parse_time(raw)
    except ValueError:
        return None
    return when.timestamp()
