"""The archive: daily gzip files of CloudEvents JSON Lines (``archive.records``) that the
sweeper appends to before it removes anything from Redis.

Files are named ``<kind>-<YYYY-MM-DD>.jsonl.gz`` by the UTC day of each record (an event's
ingest time, a snapshot's ``time``): ``events-...`` hold accepted events and the incident and
alert documents removed with them, ``deliveries-...`` delivery records and attempt-log
entries. Each append adds one gzip member (``gzip -dc`` and ``incidents import`` read a file
of several as one) and is flushed to disk before it returns, so a record the sweeper removes
is on disk first. An append that fails raises ``ArchiveError``: the sweeper then removes
nothing, and tries again at its next round.
"""

from __future__ import annotations

import gzip
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from incidents.archive.records import encode

EVENTS = "events"
DELIVERIES = "deliveries"


class ArchiveError(Exception):
    """The archive could not be written; nothing may be removed."""


class Archive:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, kind: str, day: str) -> Path:
        return self.folder / f"{kind}-{day}.jsonl.gz"

    def append(self, kind: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Append ``records`` to the files of their days, on disk when this returns; how
        many were written. Raises ArchiveError."""
        by_day: dict[str, list[bytes]] = defaultdict(list)
        for record in records:
            by_day[_day(record)].append(encode(record))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for day, lines in sorted(by_day.items()):
                path = self.path(kind, day)
                with path.open("ab") as raw:
                    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                        packed.write(b"".join(lines))
                    raw.flush()
                    os.fsync(raw.fileno())
        except OSError as exc:
            raise ArchiveError(f"cannot append to the archive in {self.folder}: {exc}") from exc
        return sum(len(lines) for lines in by_day.values())


def _day(record: Mapping[str, Any]) -> str:
    """The UTC day a record belongs to: its ingest time, else its ``time``."""
    when = record.get("imingestedat") or record.get("time") or ""
    day = str(when)[:10]
    return day if len(day) == 10 else "undated"
