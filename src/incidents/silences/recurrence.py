"""A silence's weekly recurrence: it holds deliveries only inside weekly windows.

    {"weekly": {"days": ["sat", "sun"], "start": "02:00", "end": "04:00", "timezone": "UTC"}}

Each listed day, a window opens at ``start`` (wall-clock time in ``timezone``, an IANA name;
default ``UTC``) and closes at ``end``; an ``end`` at or before ``start`` closes the next day
(``"22:00"`` to ``"02:00"`` spans midnight), and ``"24:00"`` is the end of the day. Windows
follow the zone's daylight-saving changes. The silence's ``starts_at`` and ``ends_at`` still
bound it: outside them no window counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from incidents.errors import FieldError, pointer

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_ZONE = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
_KEYS = ("days", "start", "end", "timezone")
_WINDOW = re.compile(r"^\s*(\d\d:\d\d)\s*-\s*(\d\d:\d\d)\s*$")


def zone(name: str) -> tzinfo:
    """The time zone called ``name`` (``UTC`` needs no zone database); ValueError if unknown."""
    if name == "UTC":
        return UTC
    if len(name) > 64 or not _ZONE.fullmatch(name):
        raise ValueError(f"{name!r} is not a time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a known IANA time zone (e.g. UTC, Europe/Paris)"
        ) from None


def _minutes(raw: str) -> int:
    hours, minutes = raw.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Weekly:
    days: tuple[int, ...]  # 0 = Monday, as date.weekday()
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440; at or before start: the next day
    timezone: str = "UTC"

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` falls inside one of the weekly windows."""
        tz = zone(self.timezone)
        local = at.astimezone(tz)
        for day in (local.date(), local.date() - timedelta(days=1)):  # spans midnight: opened
            if day.weekday() in self.days:  # the day before
                opens, closes = self._window(day, tz)
                if opens <= at < closes:
                    return True
        return False

    def next_edge(self, at: datetime) -> datetime:
        """The first time after ``at`` a window opens or closes (``covers`` holds its
        answer until then)."""
        tz = zone(self.timezone)
        today = at.astimezone(tz).date()
        edges = [
            edge
            for offset in range(-1, 8)
            if (day := today + timedelta(days=offset)).weekday() in self.days
            for edge in self._window(day, tz)
            if edge > at
        ]
        return min(edges)  # a listed day comes within the week

    def _window(self, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
        opens = _at(day, self.start, tz)
        closes = _at(day if self.end > self.start else day + timedelta(days=1), self.end, tz)
        return opens, closes

    def to_dict(self) -> dict[str, object]:
        return {
            "weekly": {
                "days": [DAYS[d] for d in self.days],
                "start": _clock(self.start),
                "end": _clock(self.end),
                "timezone": self.timezone,
            }
        }


def _at(day: date, minutes: int, tz: tzinfo) -> datetime:
    if minutes == 24 * 60:
        return datetime.combine(day + timedelta(days=1), time(0, 0), tz)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tz)


def parse_recurrence(
    raw: object, at: Sequence[str | int] = ("recurrence",)
) -> tuple[Weekly | None, list[FieldError]]:
    """A recurrence object, strictly: only ``weekly``, only its four keys, every value
    checked; the problems each name their place."""
    here = pointer(*at)
    if not isinstance(raw, dict) or list(raw) != ["weekly"]:
        return None, [FieldError(here, 'a recurrence is {"weekly": {...}}')]
    body = raw["weekly"]
    where = (*at, "weekly")
    if not isinstance(body, dict):
        return None, [FieldError(pointer(*where), "weekly takes an object")]
    problems = [
        FieldError(pointer(*where, k), f"unknown field {k!r}; weekly takes {', '.join(_KEYS)}")
        for k in body
        if k not in _KEYS
    ]
    days = body.get("days")
    if (
        not isinstance(days, list)
        or not days
        or not all(isinstance(d, str) and d in DAYS for d in days)
    ):
        problems.append(
            FieldError(pointer(*where, "days"), f"a non-empty list of days among {', '.join(DAYS)}")
        )
        days = []
    elif len(set(days)) != len(days):
        problems.append(FieldError(pointer(*where, "days"), "a day is listed twice"))
    clocks: dict[str, int] = {}
    for name in ("start", "end"):
        value = body.get(name)
        if not isinstance(value, str) or not _CLOCK.fullmatch(value):
            problems.append(FieldError(pointer(*where, name), "a time of day HH:MM (00:00-24:00)"))
        else:
            clocks[name] = _minutes(value)
    if clocks.get("start") == 24 * 60:
        problems.append(FieldError(pointer(*where, "start"), "a window starts at 23:59 at latest"))
    if "start" in clocks and clocks["start"] == clocks.get("end"):
        problems.append(FieldError(pointer(*where, "end"), "end must differ from start"))
    timezone = body.get("timezone", "UTC")
    try:
        if not isinstance(timezone, str):
            raise ValueError("a time zone name (an IANA name such as UTC or Europe/Paris)")
        zone(timezone)
    except ValueError as exc:
        problems.append(FieldError(pointer(*where, "timezone"), str(exc)))
    if problems:
        return None, problems
    indexes = tuple(sorted(DAYS.index(d) for d in days))
    return Weekly(indexes, clocks["start"], clocks["end"], str(timezone)), []


def weekly_input(days: str, window: str, timezone: str = "UTC") -> dict[str, object]:
    """The ``recurrence`` a person typed as ``sat,sun`` and ``02:00-04:00`` (the CLI's and the
    console's); ValueError when the window is not ``HH:MM-HH:MM``. The rest is judged by
    ``parse_recurrence``."""
    found = _WINDOW.match(window)
    if found is None:
        raise ValueError(f"the window {window!r} is not HH:MM-HH:MM")
    named = [d.strip().lower() for d in days.split(",") if d.strip()]
    return {
        "weekly": {
            "days": named,
            "start": found.group(1),
            "end": found.group(2),
            "timezone": timezone.strip() or "UTC",
        }
    }
