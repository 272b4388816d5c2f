"""The id index: which stored events carry a CloudEvents id, which is the ``(source, id)``
dedup check too.

The index is a fixed number of hashes (``keys.event_ids``, by a checksum of the id). In the
bucket of an id, field ``<id>`` holds the first stored event with that id as one record,
``<sequence> <source length> <incident length> <source><incident>`` (lengths in bytes, so a
source or an incident id may hold any character), or ``-`` once that event is gone while
others with the id stay. The event of each other source is under field ``<id>\\n<source>``
(a CloudEvents string holds no control character), and field ``<id>\\n`` counts those. So a
look-up reads one field, or two when sources share an id, however many share it. The Lua
scripts (``event_index.lua``, included by ``accept``, ``restore_event`` and ``unindex``)
read and write the same fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD = re.compile(rb"(\d+) (\d+) (\d+) ")
GONE = b"-"  # field <id> once its event is gone while others with the id stay


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


def decode(value: bytes | None) -> Indexed | None:
    """The event a field's record names (None for no record, or for ``GONE``)."""
    if value is None or value == GONE:
        return None
    head = _HEAD.match(value)
    if head is None:
        raise ValueError(f"not an id index record: {value!r}")
    seq, slen, ilen = (int(x) for x in head.groups())
    start = head.end()
    source = value[start : start + slen].decode()
    incident = value[start + slen : start + slen + ilen].decode()
    return Indexed(source, seq, incident)


def other_field(event_id: str, source: str) -> str:
    """The field of the event of ``(event_id, source)`` when another source's came first."""
    return f"{event_id}\n{source}"


def count_field(event_id: str) -> str:
    """The field that counts the ``other_field`` s of ``event_id``."""
    return f"{event_id}\n"


def found(first: bytes | None, other: bytes | None, source: str) -> Indexed | None:
    """The event of ``source``, from fields ``<id>`` and ``<id>\\n<source>`` as read."""
    head = decode(first)
    if head is not None and head.source == source:
        return head
    return decode(other)


def others_pattern(event_id: str) -> str:
    """An ``HSCAN MATCH`` pattern of the ``other_field`` s of ``event_id`` (and its count)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", event_id) + "\n*"
