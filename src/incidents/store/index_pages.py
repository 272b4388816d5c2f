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

import asyncio
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
_MERGED_VERSION = 2  # a cursor over several partitions' indexes

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
class Positions:
    """Where a walk over several partitions' indexes stands: a position in each (the cursor
    of a deployment with more than one partition; see ``walk_indexes``)."""

    positions: tuple[Position, ...]

    @classmethod
    def first(cls, count: int) -> Positions:
        return cls((Position(),) * count)

    def encode(self) -> str:
        raw = orjson.dumps(
            [
                _MERGED_VERSION,
                [[None if math.isinf(p.score) else p.score, p.ties] for p in self.positions],
            ]
        )
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str, count: int) -> Positions:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            version, parts = orjson.loads(raw)
            if version != _MERGED_VERSION or len(parts) != count:
                raise ValueError("another layout")
            positions = tuple(_position(score, ties) for score, ties in parts)
        except (binascii.Error, ValueError, TypeError):
            raise bad_cursor(cursor) from None
        return cls(positions)


def _position(score: object, ties: object) -> Position:
    if (
        not (score is None or (isinstance(score, int | float) and math.isfinite(score)))
        or not isinstance(ties, int)
        or isinstance(ties, bool)
        or ties < 0
    ):
        raise ValueError("not a position")
    return Position(math.inf if score is None else float(score), ties)


@dataclass(frozen=True)
class MergedRequest:
    """``PageRequest`` over several partitions' indexes: ``start`` a position in each."""

    limit: int
    start: Positions
    offset: int = 0

    @classmethod
    def of(cls, asked: PageRequest, count: int, cursor: str | None) -> MergedRequest:
        start = Positions.first(count) if cursor is None else Positions.decode(cursor, count)
        return cls(asked.limit, start, asked.offset)


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
    merged: str | None = None  # a cursor over several partitions' indexes, as given

    @classmethod
    def after(cls, limit: int, cursor: str | None = None, offset: int = 0) -> PageRequest:
        """A request for the page after ``cursor`` (a ``next_cursor``); a 400 if it is
        not one."""
        if cursor is None:
            return cls(limit, Position(), offset)
        if _is_merged(cursor):  # decoded by walk_partitions, which knows how many there are
            return cls(limit, Position(), offset, merged=cursor)
        return cls(limit, Position.decode(cursor), offset)


def _is_merged(cursor: str) -> bool:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(raw, list) and len(raw) == 2 and raw[0] == _MERGED_VERSION


async def walk_index(
    redis: aioredis.Redis,
    key: str,
    asked: PageRequest,
    load: Callable[[Sequence[str]], Awaitable[Sequence[T | None]]],
    keep: Callable[[T], bool],
) -> Page[T]:
    """Up to ``asked.limit`` loaded members of the index at ``key`` that ``keep`` accepts,
    newest first, and the cursor after the last index entry read."""
    walked = await _walk(redis, key, asked.start, asked.limit, asked.offset, load, keep)
    found = [item for item, _, _ in walked.found]
    return Page(found, None if walked.exhausted else walked.end.encode())


@dataclass
class _Walked(Generic[T]):
    """What one walk found: each item with its score and the position just after it, where
    the walk stopped, and whether the index is exhausted there."""

    found: list[tuple[T, float, Position]]
    end: Position
    exhausted: bool


async def _walk(
    redis: aioredis.Redis,
    key: str,
    position: Position,
    limit: int,
    skip: int,
    load: Callable[[Sequence[str]], Awaitable[Sequence[T | None]]],
    keep: Callable[[T], bool],
) -> _Walked[T]:
    budget = MAX_SCAN + skip  # an offset costs what it skips: cursors do not
    found: list[tuple[T, float, Position]] = []
    while len(found) < limit and budget > 0:
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
            found.append((item, float(score), position))
            if len(found) == limit:
                break
        budget -= read
        if read == len(rows) and len(rows) < want:
            return _Walked(found, position, True)  # the index is exhausted
    return _Walked(found, position, False)


async def walk_partitions(
    redis: aioredis.Redis,
    index_keys: Sequence[str],
    asked: PageRequest,
    load: Callable[[Sequence[str]], Awaitable[Sequence[T | None]]],
    keep: Callable[[T], bool],
) -> Page[T]:
    """``walk_index`` of the one index a one-partition deployment has (its cursors as they
    always were), or ``walk_indexes`` of each partition's (composite cursors); a cursor of
    the other kind is a 400."""
    if len(index_keys) == 1:
        if asked.merged is not None:
            raise bad_cursor(asked.merged)
        return await walk_index(redis, index_keys[0], asked, load, keep)
    if asked.start != Position():
        raise bad_cursor(asked.start.encode())
    merged = MergedRequest.of(asked, len(index_keys), asked.merged)
    return await walk_indexes(redis, index_keys, merged, load, keep)


async def walk_indexes(
    redis: aioredis.Redis,
    index_keys: Sequence[str],
    asked: MergedRequest,
    load: Callable[[Sequence[str]], Awaitable[Sequence[T | None]]],
    keep: Callable[[T], bool],
) -> Page[T]:
    """``walk_index`` over several partitions' indexes at once (``index_keys``, one per
    partition): up to ``asked.limit`` items of all of them, merged newest first, and a
    composite cursor (``Positions``) after the last item each contributed.

    Each index is walked from its own position for a page (within the scan bound); the items
    are merged by score, and an index moves on only past what the page took from it, or past
    all it read when the page took everything it found, so no item is skipped or repeated.
    """
    want = asked.limit + asked.offset
    walks = await asyncio.gather(
        *(
            _walk(redis, key, at, want, 0, load, keep)
            for key, at in zip(index_keys, asked.start.positions, strict=True)
        )
    )
    merged = sorted(
        ((-score, n, i) for n, w in enumerate(walks) for i, (_, score, _) in enumerate(w.found)),
    )[:want]
    taken = [0] * len(walks)
    for _, n, _ in merged:
        taken[n] += 1
    positions = []
    for n, walk in enumerate(walks):
        if taken[n] == len(walk.found):  # all it found: past all it read too
            positions.append(walk.end)
        else:
            positions.append(walk.found[taken[n] - 1][2] if taken[n] else asked.start.positions[n])
    items = [walks[n].found[i][0] for _, n, i in merged][asked.offset :]
    done = all(w.exhausted and taken[n] == len(w.found) for n, w in enumerate(walks))
    return Page(items, None if done else Positions(tuple(positions)).encode())


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
