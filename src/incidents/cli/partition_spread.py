"""Whether a Redis Cluster spreads a deployment's partitions evenly over its primaries.

A partition lives on the primary that serves the slot of its hash tag
(``keys.partition_tag``), and a primary's load is its partitions' share of the events: the
busiest primary is the ceiling of the whole deployment. The tags lie evenly over the slots, so
primaries with equal slot ranges (what ``redis-cli --cluster create`` makes) share them evenly;
slots moved by hand need not, so ``serve`` and ``worker`` warn at start-up when one primary
holds more than one partition more than another, saying where each partition is and how to
move slots back.
"""

from __future__ import annotations

from typing import Any

from incidents.store.keys import Partitions


def spread(cluster: Any, layout: Partitions) -> dict[str, list[int]]:
    """Each primary (``host:port``) of a cluster client, and the partitions it serves."""
    found: dict[str, list[int]] = {node.name: [] for node in cluster.get_primaries()}
    for space in layout:
        found.setdefault(cluster.get_node_from_key(space.SEQUENCE).name, []).append(space.partition)
    return found


def uneven(found: dict[str, list[int]]) -> str | None:
    """A warning when one primary holds more than one partition more than another; None when
    they are spread as evenly as their number allows."""
    counts = [len(partitions) for partitions in found.values()]
    if not counts or max(counts) - min(counts) <= 1:
        return None
    total = sum(counts)
    where = "; ".join(
        f"{node}: {', '.join(map(str, parts)) or 'none'}" for node, parts in sorted(found.items())
    )
    return (
        f"the Redis Cluster's primaries do not share the {total} partitions evenly ({where}):"
        " a primary carries its partitions' share of the events, so the busiest one limits the"
        " deployment. Move slots (`redis-cli --cluster rebalance`, or CLUSTER SETSLOT) until"
        " each primary serves as many partitions; the partitions lie evenly over the slots"
        " (partition n of P in the n-th of P equal ranges)"
    )
