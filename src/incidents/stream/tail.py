"""Following the retained event stream (the outbox, see ``EventStore.recent``) as it grows.

Reading is ``EventStore.recent`` from the last entry seen; only when that finds nothing does
the follower wait, in one blocking ``XREAD`` of at most ``block`` seconds, for the next entry.
Busy: one range read per batch; idle: one blocked read per ``block`` seconds.
"""

from __future__ import annotations

from typing import cast

from incidents.store import keys
from incidents.store.events import EventStore, RecentEvent
from incidents.store.redis import guarded

Entries = list[tuple[bytes, dict[bytes, bytes]]]


async def stream_head(store: EventStore) -> tuple[str, int | None]:
    """The id of the newest entry of the retained stream ("0-0" when it is empty), and the
    sequence of the oldest event it still holds (None when empty): where a follower starts,
    and how far back a resume can reach."""
    async with guarded("reading the event stream"):
        newest = cast(Entries, await store.redis.xrevrange(keys.OUTBOX, "+", "-", count=1) or [])
        oldest = cast(Entries, await store.redis.xrange(keys.OUTBOX, "-", "+", count=1) or [])
    last_id = newest[0][0].decode() if newest else "0-0"
    first = oldest[0][1] if oldest else {}
    return last_id, int(first[b"seq"]) if b"seq" in first else None


async def follow(store: EventStore, after: str, limit: int, block: float) -> list[RecentEvent]:
    """Up to ``limit`` events after the entry ``after``, waiting up to ``block`` seconds
    (below the connection's socket timeout) when there are none yet."""
    found = await store.recent(after, limit)
    if found:
        return found
    async with guarded("following the event stream"):
        arrived = await store.redis.xread(
            {keys.OUTBOX: after}, count=1, block=max(1, int(block * 1000))
        )
    return await store.recent(after, limit) if arrived else []
