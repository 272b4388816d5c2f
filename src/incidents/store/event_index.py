"""The id index: which stored events carry a CloudEvents id, which is the ``(source, id)``
dedup check too.

The index is a few hashes (``keys.event_ids``) whose field is the event id and whose value
lists the stored events with that id, one record per source, records side by side:
``<sequence> <source length> <incident length> <source><incident>`` (lengths in bytes, so a
source or an incident id may hold any character). Nearly every id has one source, so nearly
every value is one short record. The Lua scripts (``accept``, ``restore_event``,
``unindex``) read and write the same records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD = re.compile(rb"(\d+) (\d+) (\d+) ")


@dataclass(frozen=True)
class Indexed:
    """One stored event with the id: its source, sequence and incident id ('' for none)."""

    source: str
    sequence: int
    incident: str


def encode(sequence: int, source: str, incident: str) -> bytes:
    """One record, as the scripts write it."""
    s, i = source.encode(), incident.encode()
    return b"%d %d %d %s%s" % (sequence, len(s), len(i), s, i)


def decode(value: bytes | None) -> list[Indexed]:
    """The records of one id's value, in the order they were written."""
    out: list[Indexed] = []
    at = 0
    raw = value or b""
    while at < len(raw):
        head = _HEAD.match(raw, at)
        if head is None:
            raise ValueError(f"not an id index value: {raw!r}")
        seq, slen, ilen = (int(x) for x in head.groups())
        start = head.end()
        source = raw[start : start + slen]
        incident = raw[start + slen : start + slen + ilen]
        out.append(Indexed(source.decode(), seq, incident.decode()))
        at = start + slen + ilen
    return out


def find(value: bytes | None, source: str) -> Indexed | None:
    """The record of ``source`` in one id's value, if there is one."""
    return next((r for r in decode(value) if r.source == source), None)
