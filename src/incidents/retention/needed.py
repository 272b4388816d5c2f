"""What delivery still needs: the lowest gateway sequence of a partition the sweeper must
not reach.

Two things hold events back. The router takes a partition's outbox entries in order, so
every event from the first entry not routed yet on waits for fan-out. Deliveries wait in
lanes ordered by sequence, and every lane with anything in it is either due (the partition's
``lanes:due``) or leased (``lanes:leased``), so the heads of those lanes hold the lowest
sequences still to deliver. The floor is the least of these; an event at or above it, its
delivery records and its outbox entry are left alone. A lane drains within its retry
schedule (a delivery that runs out of retries is dead-lettered), so the floor always moves
on. Everything here reads one partition's keys (an incident's lanes are in its partition),
so the floor of one partition says nothing of another's.
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


def routing_frontier(client: redis.Redis, space: keys.Keyspace = keys.SINGLE) -> Frontier:
    """Where routing stands in ``space``: the first entry of its outbox that the routers have
    not acknowledged (read and still pending, or not read yet)."""
    outbox = space.OUTBOX
    if not client.exists(outbox):
        return Frontier(None, None)
    groups = client.xinfo_groups(outbox)
    mine = next((g for g in groups if _text(g.get("name")) == keys.ROUTER_GROUP), None)
    if mine is None:
        first = client.xrange(outbox, "-", "+", count=1)
    elif int(mine.get("pending") or 0) > 0:
        summary = client.xpending(outbox, keys.ROUTER_GROUP)
        lowest = _text(summary["min"])
        first = client.xrange(outbox, lowest, lowest, count=1)
    else:
        delivered = _text(mine.get("last-delivered-id"))
        first = client.xrange(outbox, f"({delivered}", "+", count=1)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], first or [])
    if not entries:
        return Frontier(None, None)
    entry_id, fields = entries[0]
    seq = fields.get(b"seq")
    return Frontier(entry_id.decode(), int(seq) if seq is not None else None)


def lowest_in_lanes(client: redis.Redis, space: keys.Keyspace = keys.SINGLE) -> int | None:
    """The lowest sequence any lane of ``space`` still holds (None: every lane is empty)."""
    # A lane moves between the two atomically; both are in the partition's slot.
    with client.pipeline(transaction=True) as pipe:
        pipe.zrange(space.LANES_DUE, 0, -1)
        pipe.zrange(space.LANES_LEASED, 0, -1)
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


def delivery_floor(
    client: redis.Redis, last_sequence: int, space: keys.Keyspace = keys.SINGLE
) -> int:
    """The lowest sequence of ``space`` delivery may still need (``last_sequence + 1``, the
    partition's last, when none)."""
    floor = last_sequence + 1
    frontier = routing_frontier(client, space)
    if frontier.sequence is not None:
        floor = min(floor, frontier.sequence)
    held = lowest_in_lanes(client, space)
    if held is not None:
        floor = min(floor, held)
    return floor


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
