"""A silence: deliveries of matching events are held (not sent) while it is active.

    {"filter": {"exact": {"imservice": "payments"}}, "starts_at": "2026-05-02T02:00:00Z",
     "ends_at": "2026-05-02T04:00:00Z", "comment": "database upgrade",
     "subscriptions": ["sub_..."], "recurrence": {"weekly": {...}}}

``filter`` is one filter expression of any dialect a subscription's ``filters`` take, matched
against the event's attributes (incident context included). ``subscriptions`` limits it to
those subscriptions; without it (admins only) it holds every subscription's deliveries. A
silence is active from ``starts_at`` (default: now) until ``ends_at``, and with a weekly
``recurrence`` only inside its windows. Expiring one ends it now; it is kept, and listed, as
expired.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from incidents.errors import FieldError, InvalidRequest, pointer
from incidents.model.cloudevent import AttributeValue
from incidents.model.filters import Filter, parse_filters
from incidents.model.timestamps import parse_time
from incidents.silences.recurrence import Weekly, parse_recurrence

_LENGTH = re.compile(r"^(\d{1,6})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MAX_COMMENT = 1024
FOREVER = datetime.max.replace(tzinfo=UTC)
MAX_SUBSCRIPTIONS = 100
_FIELDS = ("filter", "starts_at", "ends_at", "comment", "subscriptions", "recurrence")


class SilenceState(StrEnum):
    PENDING = "pending"  # not started, or between the windows of its recurrence
    ACTIVE = "active"  # holding deliveries now
    EXPIRED = "expired"  # ended (or expired by hand)


@dataclass(frozen=True)
class Silence:
    id: str
    filter_expression: Mapping[str, Any]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str  # the principal's id
    created_at: datetime
    subscriptions: tuple[str, ...] = ()  # empty: every subscription
    recurrence: Weekly | None = None
    expired_by: str | None = None  # who expired it by hand, if anyone
    filter: Filter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled, problems = compile_filter(self.filter_expression)
        if problems:
            raise ValueError(f"silence {self.id}: {problems[0].pointer}: {problems[0].detail}")
        object.__setattr__(self, "filter", compiled)

    def state(self, at: datetime) -> SilenceState:
        if at >= self.ends_at:
            return SilenceState.EXPIRED
        if at < self.starts_at or (self.recurrence is not None and not self.recurrence.covers(at)):
            return SilenceState.PENDING
        return SilenceState.ACTIVE

    def next_change(self, at: datetime) -> datetime:
        """The first time after ``at`` its state may change (``FOREVER``: never)."""
        edges = [t for t in (self.starts_at, self.ends_at) if t > at]
        if self.recurrence is not None and at < self.ends_at:
            edges.append(self.recurrence.next_edge(at))
        return min(edges, default=FOREVER)

    def applies(self, sub_id: str, attributes: Mapping[str, AttributeValue]) -> bool:
        """Whether its scope and its filter take the delivery of an event with
        ``attributes`` to ``sub_id`` (whatever the time)."""
        if self.subscriptions and sub_id not in self.subscriptions:
            return False
        return self.filter.matches(attributes)

    def holds(self, sub_id: str, attributes: Mapping[str, AttributeValue], at: datetime) -> bool:
        """Whether it holds that delivery at ``at``: its scope, its filter and its time all
        say so."""
        return self.applies(sub_id, attributes) and self.state(at) is SilenceState.ACTIVE

    def expired(self, at: datetime, by: str) -> Silence:
        """Ended now (kept as expired; one that had not started ends before it starts); one
        that has ended already stays as it is."""
        if at >= self.ends_at:
            return self
        return replace(self, starts_at=min(self.starts_at, at), ends_at=at, expired_by=by)

    def to_dict(self, at: datetime | None = None) -> dict[str, object]:
        """As stored; with ``at``, as shown (its state at that time added)."""
        out: dict[str, object] = {
            "id": self.id,
            "filter": dict(self.filter_expression),
            "subscriptions": list(self.subscriptions),
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "comment": self.comment,
            "recurrence": None if self.recurrence is None else self.recurrence.to_dict(),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expired_by": self.expired_by,
        }
        if at is not None:
            out["state"] = str(self.state(at))
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Silence:
        recurrence = None
        if raw.get("recurrence") is not None:
            recurrence, problems = parse_recurrence(raw["recurrence"])
            if problems:
                raise ValueError(f"silence {raw.get('id')}: {problems[0].detail}")
        return cls(
            id=str(raw["id"]),
            filter_expression=dict(raw["filter"]),
            starts_at=parse_time(raw["starts_at"]),
            ends_at=parse_time(raw["ends_at"]),
            comment=str(raw["comment"]),
            created_by=str(raw["created_by"]),
            created_at=parse_time(raw["created_at"]),
            subscriptions=tuple(raw.get("subscriptions") or ()),
            recurrence=recurrence,
            expired_by=raw.get("expired_by"),
        )


def compile_filter(raw: object, at: str = "/filter") -> tuple[Filter, list[FieldError]]:
    """One filter expression, parsed by the subscriptions' parser (every dialect it knows,
    within its bounds); the problems' pointers start at ``at``."""
    compiled, problems = parse_filters([raw], ("filter",))
    inner = pointer("filter", 0)
    return compiled, [
        FieldError(at + p.pointer.removeprefix(inner), p.detail)
        if p.pointer.startswith(inner)
        else FieldError(at, p.detail)
        for p in problems
    ]


def _time(raw: object, name: str, problems: list[FieldError]) -> datetime | None:
    if not isinstance(raw, str):
        problems.append(FieldError(f"/{name}", "an RFC 3339 time with a zone is required"))
        return None
    try:
        parsed = parse_time(raw)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        problems.append(FieldError(f"/{name}", f"{raw!r} is not an RFC 3339 time with a zone"))
        return None
    return parsed


def parse_silence(raw: object, created_by: str, now: datetime) -> Silence:
    """A new silence from a request body; InvalidRequest listing every problem with its JSON
    pointer. Who may silence which subscriptions is checked by the caller."""
    if not isinstance(raw, dict):
        raise InvalidRequest("a silence is a JSON object", errors=[FieldError("", "an object")])
    problems = [
        FieldError(pointer(k), f"unknown field; a silence takes {', '.join(_FIELDS)}")
        for k in raw
        if k not in _FIELDS
    ]
    if "filter" not in raw:
        problems.append(FieldError("/filter", "a filter expression is required"))
    else:
        problems.extend(compile_filter(raw["filter"])[1])
    starts = _time(raw["starts_at"], "starts_at", problems) if "starts_at" in raw else now
    ends = _time(raw.get("ends_at"), "ends_at", problems)
    if starts is not None and ends is not None:
        if ends <= starts:
            problems.append(FieldError("/ends_at", "ends_at must be after starts_at"))
        elif ends <= now:
            problems.append(FieldError("/ends_at", "ends_at is in the past"))
    comment = raw.get("comment")
    if not isinstance(comment, str) or not comment.strip() or len(comment) > MAX_COMMENT:
        problems.append(
            FieldError("/comment", f"a comment (why) of 1 to {MAX_COMMENT} characters is required")
        )
    subs = raw.get("subscriptions", [])
    if not isinstance(subs, list) or len(subs) > MAX_SUBSCRIPTIONS:
        problems.append(
            FieldError("/subscriptions", f"a list of at most {MAX_SUBSCRIPTIONS} subscription ids")
        )
        subs = []
    for i, sub_id in enumerate(subs):
        if not isinstance(sub_id, str) or not sub_id:
            problems.append(FieldError(pointer("subscriptions", i), "a subscription id"))
        elif subs.index(sub_id) != i:
            problems.append(FieldError(pointer("subscriptions", i), "listed twice"))
    recurrence = None
    if raw.get("recurrence") is not None:
        recurrence, found = parse_recurrence(raw["recurrence"])
        problems.extend(found)
    if problems or starts is None or ends is None:
        raise InvalidRequest(
            f"the silence is not valid ({len(problems)} problem(s))", errors=problems
        )
    return Silence(
        id="sil_" + secrets.token_hex(8),
        filter_expression=dict(raw["filter"]),
        starts_at=starts,
        ends_at=ends,
        comment=str(comment),
        created_by=created_by,
        created_at=now,
        subscriptions=tuple(str(s) for s in subs),
        recurrence=recurrence,
    )


def scope_problems(
    subscriptions: Sequence[str], known: Mapping[str, str], caller: str, admin: bool
) -> list[FieldError]:
    """Who may silence what: an admin anything; anyone else only subscriptions it owns, and
    must name them. ``known``: subscription id -> owner, for the ids named that exist."""
    if not subscriptions and not admin:
        return [FieldError("/subscriptions", "name the subscriptions (your own) to silence")]
    return [
        FieldError(pointer("subscriptions", i), f"no subscription {sub_id!r} of yours")
        for i, sub_id in enumerate(subscriptions)
        if sub_id not in known or not (admin or known[sub_id] == caller)
    ]


def end_after(raw: str, starts: datetime) -> str:
    """What a person types for ``ends_at`` (the CLI's and the console's): a length such as
    ``2h``, ``30m`` or ``7d`` becomes the time that long after ``starts``; anything else is
    passed on as given, for ``parse_silence`` to judge."""
    found = _LENGTH.match(raw.strip())
    if found is None:
        return raw
    return (starts + timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})).isoformat()
