"""What a Redis Cluster can carry (``bench/capacity.py --cluster``): Redis CPU per accepted
event and per delivery on each primary of a 3-primary cluster, the partitions and the share of
the events each primary holds, and from those the ceiling for N primaries.

Starts a throwaway cluster (3 primaries, 3 replicas, append-only files fsynced on every write),
a plain Redis for RQ, the gateway on ``redis+cluster://`` with ``--partitions`` partitions, a
receiver and one subscription; then the same phases as on one Redis (accept one event a
request, deliver with two workers), reading ``INFO cpu`` and ``INFO commandstats`` on every
primary before and after each.

The ceiling: an event's work is done on the primary of its partition, except what touches the
global keys (``{g}``: the subscriptions, the wake-up stream), done on the one primary that
holds them. Each partition's sequence counter says how many events it stored, so each
primary's share of the events is known; the primaries without the global keys give the Redis
CPU per event of partition work (``c``: their CPU over their share), and the one with them
gives the global part (``g``: its CPU less its share of ``c``). With the partitions spread
evenly over N primaries, the busiest one spends ``c / N + g`` per event: the ceiling is one
second over that. Which primary serves a partition is the slot of its hash tag; the tags lie
evenly over the slots (``keys.partition_tag``), so the equal slot ranges of
``redis-cli --cluster create`` hold two of six partitions each; the ceiling as spread here (one
second over the busiest primary's CPU per item, as measured) is reported too. The 2-core
machine that runs the benchmark cannot show the throughput itself (every node and process
shares the same two cores); the arithmetic shows the ceiling.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, cast

import httpx
import redis

from bench.capacity import phase, post_singles, snapshot
from bench.run import Bench
from incidents.cli.partition_spread import spread
from incidents.store.embedded import EmbeddedRedis, free_port
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.keys import CLUSTER_PREFIX, Partitions
from incidents.store.redis import connect

PRIMARIES_SHOWN = (1, 2, 3, 6, 12)


@dataclass(frozen=True)
class Split:
    """Redis CPU per item, split into what every partition's primary does for its own events
    (``partition_us``, for the whole item) and what the primary of the global keys adds
    (``global_us``)."""

    partition_us: float
    global_us: float

    def busiest_us(self, primaries: int) -> float:
        """CPU per item on the busiest of ``primaries`` primaries sharing the partitions
        evenly (the one that also holds the global keys)."""
        return self.partition_us / primaries + self.global_us

    def ceiling(self, primaries: int) -> int:
        """Items a second before the busiest primary's core is full."""
        return round(1e6 / self.busiest_us(primaries))


def split(cpu_us: dict[str, float], shares: dict[str, float], global_node: str) -> Split:
    """From each primary's CPU per item (``cpu_us``) and share of the items (``shares``,
    summing to 1), the :class:`Split`. Needs a primary without the global keys that holds
    some of the items."""
    others = [n for n in cpu_us if n != global_node and shares.get(n, 0.0) > 0]
    if not others:
        raise ValueError("no primary without the global keys holds any of the items")
    per_item = sum(cpu_us[n] for n in others) / sum(shares[n] for n in others)
    extra = cpu_us.get(global_node, 0.0) - shares.get(global_node, 0.0) * per_item
    return Split(round(per_item, 1), round(max(extra, 0.0), 1))


def primaries_of(client: redis.RedisCluster, layout: Partitions) -> dict[str, list[int]]:
    """Each primary (``host:port``) and the partitions it serves."""
    return spread(client, layout)


def event_counts(client: redis.RedisCluster, layout: Partitions) -> dict[str, int]:
    """Each primary's events stored so far (by its partitions' sequence counters)."""
    return {
        node: sum(int(client.get(layout.spaces[p].SEQUENCE) or 0) for p in partitions)
        for node, partitions in primaries_of(client, layout).items()
    }


def shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Each primary's share of the events stored between two :func:`event_counts`."""
    grown = {n: after[n] - before.get(n, 0) for n in after}
    total = sum(grown.values()) or 1
    return {n: round(g / total, 4) for n, g in grown.items()}


def per_primary(
    nodes: dict[str, redis.Redis], before: dict[str, Any], after: dict[str, Any], items: int
) -> dict[str, dict[str, Any]]:
    return {n: phase(before[n], after[n], items) for n in nodes}


def snapshots(nodes: dict[str, redis.Redis]) -> dict[str, Any]:
    return {n: snapshot(c) for n, c in nodes.items()}


def measure_cluster(
    bench: Bench, events: int, incidents: int, concurrency: int, partitions: int
) -> dict[str, Any]:
    """The phases on a 3-primary cluster; per primary figures and the ceiling."""
    cluster = EmbeddedCluster(bench.tmp / "cluster", os.environ)
    queue = EmbeddedRedis(bench.tmp / "queue", os.environ, appendonly=False)
    results: dict[str, Any] = {"partitions": partitions, "events": events}
    results["incidents"], results["concurrency"] = incidents, concurrency
    with cluster:
        queue.start()
        try:
            extra = {
                "INCIDENTS_REDIS_URL": cluster.url,
                "INCIDENTS_QUEUE_REDIS_URL": queue.url,
                "INCIDENTS_PARTITIONS": str(partitions),
            }
            results.update(_phases(bench, cluster, extra, events, incidents, concurrency))
        finally:
            queue.stop()
    return results


def _phases(
    bench: Bench,
    cluster: EmbeddedCluster,
    extra: dict[str, str],
    events: int,
    incidents: int,
    concurrency: int,
) -> dict[str, Any]:
    layout = Partitions(int(extra["INCIDENTS_PARTITIONS"]), tagged=True)
    client = cast(redis.RedisCluster, connect(cluster.url))
    nodes = {
        f"127.0.0.1:{n.port}": redis.Redis(port=n.port, decode_responses=True)
        for n in cluster.primaries()
    }
    global_node = client.get_node_from_key(CLUSTER_PREFIX + "subs").name  # type: ignore[no-untyped-call]  # redis-py's
    results: dict[str, Any] = {"global_keys_on": global_node}
    results["redis_version"] = next(iter(nodes.values())).info("server")["redis_version"]
    port, rport = free_port(), free_port()
    stats = f"http://127.0.0.1:{rport}/stats"
    with bench.receiver(rport, 1), bench.gateway(port, **extra):
        base = f"http://127.0.0.1:{port}"
        bench.declare(base, incidents)
        bench.subscribe(base, f"http://127.0.0.1:{rport}/hook")
        declared = event_counts(client, layout)
        before = snapshots(nodes)
        elapsed = asyncio.run(post_singles(base, events, incidents, concurrency))
        after = snapshots(nodes)
        results["accept"] = per_primary(nodes, before, after, events)
        results["accept_measured_per_s"] = round(events / elapsed, 1)
        before = snapshots(nodes)
        with bench.workers(2, **extra):
            bench.wait_count(stats, events, 900)
            after = snapshots(nodes)
            arrivals = sorted(
                httpx.get(stats + "?detail=1", timeout=30).json()["arrivals"].values()
            )
        results["deliver"] = per_primary(nodes, before, after, events)
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        results["deliver_measured_per_s"] = round((len(arrivals) - 1) / span, 1) if span else None
        results["partitions_of"] = primaries_of(client, layout)
        results["event_share"] = shares(declared, event_counts(client, layout))
    client.close()
    for c in nodes.values():
        c.close()
    for kind in ("accept", "deliver"):
        cpu = {n: r["redis_cpu_us_per_item"] for n, r in results[kind].items()}
        found = split(cpu, results["event_share"], global_node)
        results[f"{kind}_split_us"] = {"partition": found.partition_us, "global": found.global_us}
        results[f"{kind}_ceiling_per_s"] = {str(n): found.ceiling(n) for n in PRIMARIES_SHOWN}
        # As the partitions are spread here: the busiest primary as measured.
        results[f"{kind}_ceiling_here_per_s"] = round(1e6 / max(cpu.values()))
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return results


def table(results: dict[str, Any]) -> str:
    """Per primary: partitions, share of the events, Redis CPU per accepted event and per
    delivery; then the split and the ceiling for N primaries."""
    lines = [
        f"{'primary':<18} {'partitions':<12} {'events':>7} {'accept us':>10} {'deliver us':>11}"
    ]
    for node, parts in results["partitions_of"].items():
        mark = " (+ global keys)" if node == results["global_keys_on"] else ""
        lines.append(
            f"{node:<18} {','.join(map(str, parts)) or '-':<12}"
            f" {results['event_share'][node]:>7.1%}"
            f" {results['accept'][node]['redis_cpu_us_per_item']:>10}"
            f" {results['deliver'][node]['redis_cpu_us_per_item']:>11}{mark}"
        )
    for kind, per in (("accept", "accepted events"), ("deliver", "deliveries")):
        s = results[f"{kind}_split_us"]
        ceilings = ", ".join(f"{n}: {c:,}" for n, c in results[f"{kind}_ceiling_per_s"].items())
        lines.append(
            f"{kind}: {s['partition']} us per item on its partition's primary,"
            f" {s['global']} us on the global keys' primary; {per}/s for N primaries: {ceilings};"
            f" with the partitions as spread here: {results[f'{kind}_ceiling_here_per_s']:,}"
        )
    return "\n".join(lines)
