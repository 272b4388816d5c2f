"""Keyset pages over a sorted-set index, newest first, behind an opaque cursor.

An index (``incidents:incident-index``, ``incidents:alert-index``) scores each member by a
time. A page is read with ``ZREVRANGEBYSCORE`` from a position, never by skipping the
entries before it: a position is the last score passed and how many members with exactly
that score were passed (Redis orders equal scores by member, so that count is stable).

Filters and the caller's visibility are applied while walking. A walk reads at most
``MAX_SCAN`` index entries per request, so a page costs the same however large the index is;
a sparse filter may therefore answer a short (even empty) page with a ``next_cursor`` to
follow. ``next_cursor`` is None only once the index is exhausted.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import orjson
import redis.asyncio as aioredis

from incidents.errors import FieldError, InvalidRequest
from incidents.store.redis import guarded

# Index entries read per request at most (documents are read for each of them).
MAX_SCAN = 2000
# Index entries read per round trip.
BATCH = 200
_VERSION = 1

T = TypeVar("T")


def bad_cursor(raw: str) -> InvalidRequest:
    """A ``cursor`` query parameter that this gateway did not hand out (a 400)."""
    detail = f"cursor={raw[:80]!r} is not a cursor from a previous page; start without one"
    return InvalidRequest(detail, errors=[FieldError("/query/cursor", "not a cursor")])


@dataclass(frozen=True)
class Position:
    """Where a walk over an index stands: below ``score``, after ``ties`` members at it."""

    score: float = math.inf
    ties: int = 0

    def after(self, score: float) -> Position:
        return Position(score, self.ties + 1) if score == self.score else Position(score, 1)

    def encode(self) -> str:
        raw = orjson.dumps([_VERSION, None if math.isinf(self.score) else self.score, self.ties])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            version, score, ties = orjson.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise bad_cursor(cursor) from None
        if (
            version != _VERSION
            or not (score is None or (isinstance(score, int | float) and math.isfinite(score)))
            or not isinstance(ties, int)
            or isinstance(ties, bool)
            or ties < 0
        ):
            raise bad_cursor(cursor)
        return cls(math.inf if score is None else float(score), ties)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: nothing is left after this page


@dataclass(frozen=True)
class PageRequest:
    """What a caller asked for: up to ``limit`` items from ``start`` (the newest by default),
    skipping the first ``offset`` matches (kept for clients written before cursors)."""

    limit: int
    start: Position = Position()
    offset: int = 0

    @classmethod
    def after(cls, limit: int, cursor: str | None = None, offset: int = 0) -> PageRequest:
        """A request for the page after ``cursor`` (a ``next_cursor``); a 400 if it is
        not one."""
        return cls(limit, Position() if cursor is None else Position.decode(cursor), offset)


async def walk_index(
    redis: aioredis.Redis,
    key: str,
    asked: PageRequest,
    load: Callable[[Sequence[str]], Awaitable[Sequence[T | None]]],
    keep: Callable[[T], bool],
) -> Page[T]:
    """Up to ``asked.limit`` loaded members of the index at ``key`` that ``keep`` accepts,
    newest first, and the cursor after the last index entry read."""
    position = asked.start
    skip = asked.offset
    budget = MAX_SCAN + skip  # an offset costs what it skips: cursors do not
    found: list[T] = []
    while len(found) < asked.limit and budget > 0:
        want = min(BATCH, budget)
        top = "+inf" if math.isinf(position.score) else repr(position.score)
        async with guarded("reading an index"):
            found_rows = await redis.zrevrangebyscore(
                key, top, "-inf", start=position.ties, num=want, withscores=True
            )
        rows = cast(list[tuple[bytes, float]], found_rows)  # withscores: (member, score)
        members = [_text(member) for member, _ in rows]
        loaded = await load(members) if members else []
        read = 0
        for (_, score), item in zip(rows, loaded, strict=True):
            position = position.after(float(score))
            read += 1
            if item is None or not keep(item):
                continue
            if skip:
                skip -= 1
                continue
            found.append(item)
            if len(found) == asked.limit:
                break
        budget -= read
        if read == len(rows) and len(rows) < want:
            return Page(found, None)  # the index is exhausted
    return Page(found, position.encode())


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
