"""What delivery still needs: the lowest gateway sequence the sweeper must not reach.

Two things hold events back. The router takes outbox entries in order, so every event from
the first entry not routed yet on waits for fan-out. Deliveries wait in lanes ordered by
sequence, and every lane with anything in it is either due (``incidents:lanes:due``) or
leased (``incidents:lanes:leased``), so the heads of those lanes hold the lowest sequences
still to deliver. The floor is the least of these; an event at or above it, its delivery
records and its outbox entry are left alone. A lane drains within its retry schedule (a
delivery that runs out of retries is dead-lettered), so the floor always moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from incidents.store import keys

LANES_PER_ROUND_TRIP = 500


@dataclass(frozen=True)
class Frontier:
    """The first outbox entry not routed yet (None: everything is routed)."""

    entry_id: str | None
    sequence: int | None


def routing_frontier(client: redis.Redis) -> Frontier:
    """Where routing stands: the first entry of the outbox that the routers have not
    acknowledged (read and still pending, or not read yet)."""
    if not client.exists(keys.OUTBOX):
        return Frontier(None, None)
    groups = client.xinfo_groups(keys.OUTBOX)
    mine = next((g for g in groups if _text(g.get("name")) == keys.ROUTER_GROUP), None)
    if mine is None:
        first = client.xrange(keys.OUTBOX, "-", "+", count=1)
    elif int(mine.get("pending") or 0) > 0:
        summary = client.xpending(keys.OUTBOX, keys.ROUTER_GROUP)
        lowest = _text(summary["min"])
        first = client.xrange(keys.OUTBOX, lowest, lowest, count=1)
    else:
        delivered = _text(mine.get("last-delivered-id"))
        first = client.xrange(keys.OUTBOX, f"({delivered}", "+", count=1)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], first or [])
    if not entries:
        return Frontier(None, None)
    entry_id, fields = entries[0]
    seq = fields.get(b"seq")
    return Frontier(entry_id.decode(), int(seq) if seq is not None else None)


def lowest_in_lanes(client: redis.Redis) -> int | None:
    """The lowest sequence any lane still holds (None: every lane is empty)."""
    with client.pipeline(transaction=True) as pipe:  # a lane moves between the two atomically
        pipe.zrange(keys.LANES_DUE, 0, -1)
        pipe.zrange(keys.LANES_LEASED, 0, -1)
        due, leased = pipe.execute()
    lanes = sorted({_text(lane) for lane in [*due, *leased]})
    lowest: int | None = None
    for start in range(0, len(lanes), LANES_PER_ROUND_TRIP):
        with client.pipeline(transaction=False) as pipe:
            for lane in lanes[start : start + LANES_PER_ROUND_TRIP]:
                pipe.zrange(lane, 0, 0, withscores=True)
            heads = pipe.execute()
        for head in heads:
            if head:
                seq = int(float(head[0][1]))
                lowest = seq if lowest is None else min(lowest, seq)
    return lowest


def delivery_floor(client: redis.Redis, last_sequence: int) -> int:
    """The lowest sequence delivery may still need (``last_sequence + 1`` when none)."""
    floor = last_sequence + 1
    frontier = routing_frontier(client)
    if frontier.sequence is not None:
        floor = min(floor, frontier.sequence)
    held = lowest_in_lanes(client)
    if held is not None:
        floor = min(floor, held)
    return floor


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
