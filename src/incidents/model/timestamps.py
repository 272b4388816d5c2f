"""Reading RFC 3339 times as Python datetimes, leap seconds included."""

from __future__ import annotations

import re
from datetime import datetime

# "...:60" (a leap second, RFC 3339 5.6), with any fraction and offset after it.
_LEAP_SECOND = re.compile(r"^(.*T\d\d:\d\d:)60((?:\.\d+)?.*)$", re.ASCII | re.IGNORECASE)


def parse_time(raw: str) -> datetime:
    """An RFC 3339 ``date-time`` (or what ``datetime.fromisoformat`` reads) as a datetime.
    A leap second, which datetime cannot hold, is read as the last instant before the next
    minute. Raises ValueError for anything else."""
    leap = _LEAP_SECOND.match(raw)
    if leap is not None:
        raw = f"{leap.group(1)}59.999999{_offset(leap.group(2))}"
    return datetime.fromisoformat(raw)


def _offset(after_seconds: str) -> str:
    """What follows the seconds and their fraction: the zone offset (``Z``, ``+01:00``)."""
    return re.sub(r"^\.\d+", "", after_seconds)
