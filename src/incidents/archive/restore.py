"""``incidents import``: export and archive files (``archive.records``) read back into a
gateway's Redis.

It is idempotent by ``(source, id)``: an event already stored is counted as a duplicate and
left alone. An event keeps the sequence it had when that sequence is free (new events then
continue past the highest one restored), else it takes the next. Incidents and alerts are
restored from their documents as exported, so they read back exactly as they were, and the
incident counter is raised past every restored ``INC-<n>``; a document Redis already holds
at that version or a newer one is left. Nothing is fanned out again unless ``deliver``.
Delivery records and attempt-log entries (from the archive's ``deliveries`` files) are
counted and skipped: they describe deliveries made, not state to rebuild.
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
    def __init__(self, client: redis.Redis, deliver: bool = False) -> None:
        self.client = client
        self.deliver = deliver
        self.counts: Counter[str] = Counter()
        self._event = client.register_script(load_script("restore_event"))
        self._document = client.register_script(load_script("restore_document"))
        self._raise = client.register_script(load_script("raise_to"))
        self._highest_incident = 0

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
        if self._highest_incident:
            self._raise(keys=[keys.INCIDENT_COUNTER], args=[self._highest_incident])
        return self.counts

    def _restore_event(self, stored: StoredEvent) -> None:
        event = stored.event
        incident = str(event.get(Extension.INCIDENT_ID) or "")
        request = {
            "ids": keys.event_ids(event.id),
            "id": event.id,
            "source": event.source,
            "incident": incident,
            "timeline": keys.timeline(incident) if incident else "",
            "sequence": stored.sequence,
            "deliver": self.deliver,
            "events": keys.EVENTS_PREFIX,
            "bucket": keys.EVENT_BUCKET,
        }
        tail = stored_tail(
            event.to_dict(),
            microseconds(stored.ingested_at),
            stored.principal,
            stored.plan.to_dict(),
        )
        kind, value = self._event(
            keys=[keys.SEQUENCE, keys.OUTBOX, keys.SWEPT_UP_TO],
            args=[orjson.dumps(request), tail],
        )
        if kind == b"dup":
            self.counts["duplicates"] += 1
            return
        self.counts["events"] += 1
        if int(value) != stored.sequence:
            self.counts["renumbered"] += 1
        self._note_incident(incident)

    def _restore_incident(self, data: Any, version: int) -> None:
        document, refs = data.get("incident"), data.get("refs") or {}
        if not isinstance(document, dict) or not document.get("id"):
            raise RecordError("an im.gateway.incident record without an incident document")
        incident_id = str(document["id"])
        written = self._document(
            keys=[keys.incident(incident_id)], args=[version or 1, orjson.dumps(document)]
        )
        self.counts["incidents" if int(written) else "incidents_unchanged"] += 1
        self._note_incident(incident_id)
        with self.client.pipeline(transaction=False) as pipe:
            declared = _timestamp(document.get("declared_at"))
            if declared is not None:
                pipe.zadd(keys.INCIDENT_INDEX, {incident_id: declared})
            updated = _timestamp(document.get("updated_at"))
            if document.get("status") == IncidentStatus.CLOSED.value and updated is not None:
                pipe.zadd(keys.CLOSED_INCIDENTS, {incident_id: updated})
            if refs:
                pipe.hset(keys.incident_refs(incident_id), mapping=refs)
            pipe.execute()

    def _restore_alert(self, data: Any, version: int) -> None:
        raw = data.get("alert")
        if not isinstance(raw, dict):
            raise RecordError("an im.gateway.alert record without an alert document")
        alert = Alert.from_dict(raw)
        key = keys.alert(alert.tenant, alert.key)
        written = self._document(keys=[key], args=[version or 1, orjson.dumps(raw)])
        self.counts["alerts" if int(written) else "alerts_unchanged"] += 1
        with self.client.pipeline(transaction=False) as pipe:
            seen = _timestamp(alert.last_seen)
            if seen is not None:
                pipe.zadd(keys.ALERT_INDEX, {key: seen})
            resolved = _timestamp(alert.resolved_at)
            if not alert.is_open and resolved is not None:
                pipe.zadd(keys.RESOLVED_ALERTS, {key: resolved})
            pipe.execute()

    def _note_incident(self, incident_id: str) -> None:
        found = _NUMBERED.fullmatch(incident_id)
        if found:
            self._highest_incident = max(self._highest_incident, int(found[1]))


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
