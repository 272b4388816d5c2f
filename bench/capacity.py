"""What one Redis primary can carry: Redis commands and Redis CPU time per accepted event and
per delivery.

    .venv/bin/python bench/capacity.py [--events 5000] [--incidents 100] [--concurrency 64]
    .venv/bin/python bench/capacity.py --cluster [--partitions 6] [...]

With ``--cluster``, the same on a 3-primary Redis Cluster, per primary, with the ceiling for N
primaries (``bench/cluster_capacity.py``); written to ``bench/results/capacity-cluster.json``.

Starts a throwaway Redis (append-only file fsynced on every write, as in docker-compose.yml),
the gateway (one uvicorn process), a receiver and one subscription matching every note. Then,
reading ``INFO commandstats`` and ``INFO cpu`` before and after each phase:

- idle: the gateway alone for a few seconds (its background commands, for reference);
- accept: ``events`` 1 KB notes over ``incidents`` incidents, one event per request,
  ``concurrency`` requests at once, no worker running;
- deliver: two workers start and deliver those events to the receiver;
- accept (batch): as many notes again in batches of 100 (what a batch saves Redis).

For each phase it reports per item the Redis commands (total and the five most called),
the Redis CPU time (``used_cpu_user`` + ``used_cpu_sys``), the rate at which one Redis core
would be saturated (one second divided by the CPU time per item), and the throughput measured
in the run. Commands that Lua scripts call are counted by ``commandstats`` as their own, next
to the ``evalsha`` that ran them. Writes ``bench/results/capacity.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import TOKEN, Bench, note  # noqa: E402  # after the path
from incidents.store.embedded import free_port  # noqa: E402

IDLE_SECONDS = 3.0
BATCH = 100


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Calls per command (``info`` itself left out) and the Redis process's CPU seconds."""
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_info"
    }
    return {
        "calls": calls,
        "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "cpu_main": float(cpu.get("used_cpu_user_main_thread", 0.0))
        + float(cpu.get("used_cpu_sys_main_thread", 0.0)),
        "at": time.monotonic(),
    }


def phase(before: dict[str, Any], after: dict[str, Any], items: int) -> dict[str, Any]:
    """Per item: commands (total, top five by calls), CPU microseconds, saturation rate."""
    calls = {
        name: count - before["calls"].get(name, 0)
        for name, count in after["calls"].items()
        if count > before["calls"].get(name, 0)
    }
    total = sum(calls.values())
    cpu_us = (after["cpu"] - before["cpu"]) * 1e6 / items
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:5]
    return {
        "items": items,
        "commands_per_item": round(total / items, 2),
        "top5_per_item": {name: round(count / items, 2) for name, count in top},
        "all_per_item": {
            name: round(count / items, 3)
            for name, count in sorted(calls.items(), key=lambda kv: -kv[1])
        },
        "redis_cpu_us_per_item": round(cpu_us, 1),
        "redis_main_thread_cpu_us_per_item": round(
            (after["cpu_main"] - before["cpu_main"]) * 1e6 / items, 1
        ),
        "saturates_at_per_s": round(1e6 / cpu_us) if cpu_us > 0 else None,
        "seconds": round(after["at"] - before["at"], 3),
    }


def idle_rates(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per second between two snapshots of an idle Redis: commands (total, top five) and CPU
    microseconds."""
    idle = phase(before, after, 1)
    return {
        "commands": round(idle["commands_per_item"] / idle["seconds"], 1),
        "redis_cpu_us": round(idle["redis_cpu_us_per_item"] / idle["seconds"], 1),
        "top5": {k: round(v / idle["seconds"], 1) for k, v in idle["top5_per_item"].items()},
    }


async def post_singles(base: str, count: int, incidents: int, concurrency: int) -> float:
    """POST ``count`` notes one per request, ``concurrency`` at once; the seconds it took."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents+json"}
    bodies = [json.dumps(note(f"cap-{n}", f"BENCH-{n % incidents}")) for n in range(count)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as session:

        async def one() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post("/v1/events", data=body) as r:
                    text = await r.text()
                    assert r.status == 202, text

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return time.monotonic() - start


def post_batches(base: str, count: int, incidents: int) -> float:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/cloudevents-batch+json",
    }
    batches = [
        json.dumps(
            [note(f"capb-{n}", f"BENCH-{n % incidents}") for n in range(s, min(s + BATCH, count))]
        )
        for s in range(0, count, BATCH)
    ]
    start = time.monotonic()
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        for body in batches:
            r = c.post("/v1/events", content=body)
            assert r.status_code == 202, r.text
    return time.monotonic() - start


def measure(bench: Bench, events: int, incidents: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    client = redis.Redis.from_url(bench.redis.url, decode_responses=True)
    server = client.info("server")
    results["redis_version"] = server["redis_version"]
    results["events"], results["incidents"], results["concurrency"] = (
        events,
        incidents,
        concurrency,
    )
    port, rport = free_port(), free_port()
    stats = f"http://127.0.0.1:{rport}/stats"
    with bench.receiver(rport, 1), bench.gateway(port):
        base = f"http://127.0.0.1:{port}"
        bench.declare(base, incidents)
        bench.subscribe(base, f"http://127.0.0.1:{rport}/hook")

        before = snapshot(client)
        time.sleep(IDLE_SECONDS)
        after = snapshot(client)
        results["idle_gateway_per_s"] = idle_rates(before, after)

        before = snapshot(client)
        elapsed = asyncio.run(post_singles(base, events, incidents, concurrency))
        after = snapshot(client)
        accept = phase(before, after, events)
        accept["measured_per_s"] = round(events / elapsed, 1)
        results["accept"] = accept

        before = snapshot(client)
        with bench.workers(2):
            bench.wait_count(stats, events, 600)
            after = snapshot(client)
            arrivals = sorted(
                httpx.get(stats + "?detail=1", timeout=30).json()["arrivals"].values()
            )
            # Workers idle after the work: their background commands, for reference.
            time.sleep(IDLE_SECONDS)
            idle_after = snapshot(client)
        deliver = phase(before, after, events)
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        deliver["measured_per_s"] = round((len(arrivals) - 1) / span, 1) if span else None
        results["deliver"] = deliver
        results["idle_gateway_and_2_workers_per_s"] = idle_rates(after, idle_after)

        before = snapshot(client)
        elapsed = post_batches(base, events, incidents)
        after = snapshot(client)
        batch = phase(before, after, events)
        batch["measured_per_s"] = round(events / elapsed, 1)
        results[f"accept_batch_{BATCH}"] = batch
    client.close()
    return results


def table(results: dict[str, Any]) -> str:
    rows = [
        ("accept (one event a request)", "event", results["accept"]),
        ("deliver (2 workers)", "delivery", results["deliver"]),
        (f"accept (batches of {BATCH})", "event", results[f"accept_batch_{BATCH}"]),
    ]
    lines = [
        f"{'phase':<30} {'per':<9} {'cmds':>6} {'CPU us':>7} {'saturates at/s':>15}"
        f" {'measured/s':>11}  top 5 commands (calls per item)"
    ]
    for name, per, r in rows:
        top = ", ".join(f"{k} {v}" for k, v in r["top5_per_item"].items())
        lines.append(
            f"{name:<30} {per:<9} {r['commands_per_item']:>6} {r['redis_cpu_us_per_item']:>7}"
            f" {r['saturates_at_per_s']:>15,} {r['measured_per_s']:>11,}  {top}"
        )
    for key in ("idle_gateway_per_s", "idle_gateway_and_2_workers_per_s"):
        lines.append(f"{key}: {results[key]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--incidents", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="on a 3-primary Redis Cluster: CPU per primary and the ceiling for N primaries",
    )
    parser.add_argument("--partitions", type=int, default=6, help="with --cluster")
    args = parser.parse_args()
    bench = Bench(quick=True)
    if args.cluster:
        return main_cluster(bench, args)
    bench.redis.start()
    try:
        results = {"machine": bench.results["machine"]}
        results.update(measure(bench, args.events, args.incidents, args.concurrency))
    finally:
        bench.redis.stop()
        shutil.rmtree(bench.tmp, ignore_errors=True)
    out = ROOT / "bench" / "results" / "capacity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


def main_cluster(bench: Bench, args: argparse.Namespace) -> int:
    from bench.cluster_capacity import measure_cluster
    from bench.cluster_capacity import table as cluster_table

    try:
        results = {"machine": bench.results["machine"]}
        results.update(
            measure_cluster(bench, args.events, args.incidents, args.concurrency, args.partitions)
        )
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    out = ROOT / "bench" / "results" / "capacity-cluster.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(cluster_table(results))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
