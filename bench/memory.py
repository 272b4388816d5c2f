"""Redis memory per retained event: bytes and keys, for 1 KB notes, delivered.

    .venv/bin/python bench/memory.py [--notes 5000] [--incidents 100]

Starts a throwaway Redis, the gateway (``incidents serve``), one worker, a receiver and one
subscription to every event. Then, twice, reading ``used_memory`` and the key count before
and after: ``incidents`` incidents declared, ``notes`` notes of 1 KB spread over them, every
incident resolved and closed, and every event delivered. It reports, per event retained,
the Redis bytes and keys each round added, and the bytes as a ratio to the target of 1,600
bytes an event. Writes ``bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import TOKEN, Bench, note, written  # noqa: E402  # after the path
from incidents.store.embedded import free_port  # noqa: E402

TARGET = 1600  # bytes of Redis per retained event
BATCH = 200


def post_batch(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), BATCH):
        r = client.post("/v1/events", content=json.dumps(events[start : start + BATCH]))
        assert r.status_code in (200, 202), r.text


def lifecycle(incident: str, kind: str, n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{incident}-{n}",
        "source": "/bench",
        "type": f"im.incident.{kind}",
        "imincidentid": incident,
        "data": {"title": "bench", "severity": "SEV3", "service": "bench"}
        if kind == "declare"
        else {},
    }


def one_round(
    base: str, stats: str, watched: redis.Redis, tag: str, notes: int, incidents: int
) -> dict[str, Any]:
    """The load once; what it added to Redis per event, once every event is delivered."""
    before_bytes, before_keys = int(watched.info("memory")["used_memory"]), watched.dbsize()
    before_received = Bench.received(stats)
    ids = [f"{tag}-{n}" for n in range(incidents)]
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/cloudevents-batch+json",
    }
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        post_batch(client, [lifecycle(i, "declare", 0) for i in ids])
        post_batch(
            client,
            [note(f"{tag}-note-{n}", ids[n % incidents], "x" * 1024) for n in range(notes)],
        )
        post_batch(client, [lifecycle(i, "resolve", 0) for i in ids])
        post_batch(client, [lifecycle(i, "close", 0) for i in ids])
    events = notes + 3 * incidents
    Bench.wait_count(stats, before_received + events, 600)
    time.sleep(2.0)  # the last lanes hand back their leases
    added_bytes = int(watched.info("memory")["used_memory"]) - before_bytes
    added_keys = watched.dbsize() - before_keys
    return {
        "events": events,
        "bytes_per_event": round(added_bytes / events),
        "keys_per_event": round(added_keys / events, 2),
        "ratio_to_target": round(added_bytes / events / TARGET, 3),
    }


def families(watched: redis.Redis, sample: int = 5000) -> dict[str, dict[str, int]]:
    """Keys by family (the name up to its first variable part), with their count and average
    ``MEMORY USAGE`` (over up to ``sample`` keys of the family): where the bytes go."""
    found: dict[str, list[int]] = {}
    for raw in watched.scan_iter(count=1000):
        name = raw.decode()
        family = ":".join(name.split(":")[:2])
        sizes = found.setdefault(family, [])
        if len(sizes) < sample:
            sizes.append(int(watched.memory_usage(name) or 0))
        else:
            sizes.append(-1)
    return {
        family: {
            "keys": len(sizes),
            "avg_bytes": round(
                sum(x for x in sizes if x >= 0) / max(1, sum(x >= 0 for x in sizes))
            ),
        }
        for family, sizes in sorted(found.items())
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=int, default=5000)
    parser.add_argument("--incidents", type=int, default=100)
    args = parser.parse_args()
    bench = Bench(quick=True, appendfsync="everysec")
    bench.redis.start()
    results: dict[str, Any] = {"machine": bench.results["machine"], "target": TARGET}
    try:
        watched = redis.Redis.from_url(bench.redis.url)
        port, rport = free_port(), free_port()
        with bench.receiver(rport, 1), bench.gateway(port), bench.workers(1):
            base, stats = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rport}/stats"
            r = httpx.post(
                base + "/v1/subscriptions",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={"sink": f"http://127.0.0.1:{rport}/hook", "protocol": "HTTP"},
                timeout=10,
            )
            assert r.status_code == 201, r.text
            for n in (1, 2):
                results[f"round_{n}"] = one_round(
                    base, stats, watched, f"r{n}", args.notes, args.incidents
                )
            results["keys"] = families(watched)
        watched.close()
    finally:
        bench.redis.stop()
    for key in ("round_1", "round_2"):
        print(key, results[key])
    for family, row in results["keys"].items():
        print(f"  {family:<32} {row['keys']:>7} keys, {row['avg_bytes']:>6} bytes each")
    written(results, "memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
