"""Following the retained event stream (the outbox, see ``EventStore.recent``) as it grows.

Reading is ``EventStore.recent`` from the last entry seen; only when that finds nothing does
the follower wait, in one blocking ``XREAD`` of at most ``block`` seconds, for the next entry.
Busy: one range read per batch; idle: one blocked read per ``block`` seconds. With several
partitions, each has its outbox stream: the follower reads them all, and waits on all of them
at once (one blocking read each, the first to answer ends the wait).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from incidents.store.events import EventStore, RecentEvent, stream_positions
from incidents.store.redis import guarded

Entries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True)
class Head:
    """One partition's retained stream: its newest entry id ("0-0" when empty) and
    sequence (0 when empty), and the sequence of the oldest event it still holds."""

    newest_id: str
    newest: int
    oldest: int | None


async def stream_heads(store: EventStore) -> list[Head]:
    """Each partition's ``Head``, in partition order."""
    async with guarded("reading the event stream"), store.redis.pipeline(False) as pipe:
        for space in store.layout:
            pipe.xrevrange(space.OUTBOX, "+", "-", count=1)
            pipe.xrange(space.OUTBOX, "-", "+", count=1)
        raws = await pipe.execute()
    heads = []
    for newest_raw, oldest_raw in zip(raws[::2], raws[1::2], strict=True):
        newest = cast(Entries, newest_raw or [])
        oldest = cast(Entries, oldest_raw or [])
        last = newest[0][1] if newest else {}
        first = oldest[0][1] if oldest else {}
        heads.append(
            Head(
                newest[0][0].decode() if newest else "0-0",
                int(last[b"seq"]) if b"seq" in last else 0,
                int(first[b"seq"]) if b"seq" in first else None,
            )
        )
    return heads


async def follow(store: EventStore, after: str, limit: int, block: float) -> list[RecentEvent]:
    """Up to ``limit`` events after the position ``after``, waiting up to ``block`` seconds
    (below the connection's socket timeout) when there are none yet."""
    found = await store.recent(after, limit)
    if found:
        return found
    wait_ms = max(1, int(block * 1000))
    spaces = store.layout.spaces
    async with guarded("following the event stream"):
        if len(spaces) == 1:
            arrived = bool(
                await store.redis.xread({spaces[0].OUTBOX: after}, count=1, block=wait_ms)
            )
        else:
            arrived = await _any_arrives(store, after, wait_ms)
    return await store.recent(after, limit) if arrived else []


async def _any_arrives(store: EventStore, after: str, wait_ms: int) -> bool:
    """Wait (up to ``wait_ms``) until any partition's stream has an entry after ``after``."""
    positions = stream_positions(after, store.layout.count)
    waits = [
        asyncio.ensure_future(store.redis.xread({space.OUTBOX: at}, count=1, block=wait_ms))
        for space, at in zip(store.layout, positions, strict=True)
    ]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is None and task.result():
                return True
            if task.exception() is not None:
                raise cast(BaseException, task.exception())
        return False
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
