"""What open live streams cost the API process: ``GET /v1/stream`` with many clients.

    .venv/bin/python bench/stream.py [--streams 200] [--rate 100] [--seconds 20]

Starts a throwaway Redis and the gateway (one uvicorn process), then measures that process's
RSS and CPU: with no stream open (the baseline), with N idle streams, and with N streams while
events are posted at ``rate`` per second; reports the messages delivered and the latency from
the start of each POST to each stream's receipt of the event (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402  # after the path
    TOKEN,
    UVICORN_FLAGS,
    cpu_seconds,
    declaration,
    percentile,
    process,
)
from incidents.store.embedded import EmbeddedRedis, free_port  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID_LINE = re.compile(rb"(?:^|\n)id: (\d+)\n")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Streams:
    """``count`` open streams; each notes when it received which sequence."""

    def __init__(self, base: str, count: int) -> None:
        self.base, self.count = base, count
        self.received: list[tuple[int, float]] = []
        self.open = 0
        self.all_open = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.tasks = [asyncio.create_task(self._one(session)) for _ in range(self.count)]
        await asyncio.wait_for(self.all_open.wait(), 60)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.base + "/v1/stream", headers=AUTH) as response:
            assert response.status == 200, await response.text()
            self.open += 1
            if self.open == self.count:
                self.all_open.set()
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                self.received.extend((int(m), now) for m in ID_LINE.findall(chunk))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def post_paced(
    session: aiohttp.ClientSession, base: str, rate: int, seconds: float
) -> dict[int, float]:
    """POST one event every 1/rate s for ``seconds``; the start time of each, by sequence."""
    sent: dict[int, float] = {}
    headers = {**AUTH, "Content-Type": "application/cloudevents+json"}

    async def one(n: int) -> None:
        body = {
            "specversion": "1.0",
            "id": f"stream-bench-{n}",
            "source": "/bench/stream",
            "type": "im.incident.note",
            "imincidentid": f"BENCH-{n % 20}",
            "data": {"text": "bench note " + "x" * 200},
        }
        start = time.perf_counter()
        async with session.post(base + "/v1/events", data=json.dumps(body), headers=headers) as r:
            assert r.status == 202, await r.text()
            sent[(await r.json())["accepted"][0]["sequence"]] = start

    tasks = []
    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return sent


async def declare(session: aiohttp.ClientSession, base: str, incidents: int) -> None:
    headers = {**AUTH, "Content-Type": "application/cloudevents+json"}
    for n in range(incidents):
        body = declaration(f"stream-bench-declare-{n}", f"BENCH-{n}", "/bench/stream")
        async with session.post(base + "/v1/events", data=json.dumps(body), headers=headers) as r:
            assert r.status in (200, 202), await r.text()


def usage(pid: int, seconds: float) -> dict[str, float]:
    """RSS at the end, and CPU as a percentage of one core, over ``seconds`` from now."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0) * 100
    return {"rss_mb": round(rss_mb(pid), 1), "cpu_pct": round(cpu, 1)}


async def measure(
    pid: int, base: str, streams: int, rate: int, seconds: float
) -> dict[str, object]:
    results: dict[str, object] = {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await declare(session, base, 20)
        results["no streams"] = await asyncio.to_thread(usage, pid, min(seconds, 5.0))
        idle = Streams(base, streams)
        await idle.start(session)
        results[f"{streams} idle streams"] = await asyncio.to_thread(usage, pid, seconds)
        busy_usage = asyncio.create_task(asyncio.to_thread(usage, pid, seconds))
        sent = await post_paced(session, base, rate, seconds)
        results[f"{streams} streams, {rate} events/s"] = await busy_usage
        await asyncio.sleep(2)  # the last events' way to every stream
        await idle.stop()
    latencies = sorted(at - sent[seq] for seq, at in idle.received if seq in sent)
    results["posted"] = len(sent)
    results["delivered"] = len(latencies)
    results["expected"] = len(sent) * streams
    if latencies:
        results["latency_ms"] = {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="incidents-bench-stream-"))
    redis = EmbeddedRedis(tmp / "redis", {}, appendonly=False)
    redis.start()
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "INCIDENTS_REDIS_URL": redis.url,
        "INCIDENTS_ADMIN_TOKEN": TOKEN,
        "INCIDENTS_SCHEMAS_DIR": str(ROOT / "schemas"),
        "INCIDENTS_POLICIES_DIR": str(ROOT / "policies"),
        "INCIDENTS_PORT": str(port),
    }
    args_uvicorn = [sys.executable, "-m", "uvicorn", "incidents.cli.runner:app_from_environ",
                    "--factory", "--port", str(port), *UVICORN_FLAGS]  # fmt: skip
    try:
        with process(args_uvicorn, env, f"http://127.0.0.1:{port}/readyz") as proc:
            base = f"http://127.0.0.1:{port}"
            results = asyncio.run(measure(proc.pid, base, args.streams, args.rate, args.seconds))
    finally:
        redis.stop()
    baseline = results["no streams"]
    assert isinstance(baseline, dict)
    for name, value in results.items():
        if isinstance(value, dict) and "rss_mb" in value:
            extra = value["rss_mb"] - baseline["rss_mb"]
            print(f"{name:>28}: RSS {value['rss_mb']:7.1f} MiB (+{extra:.1f} over no streams)"
                  f"  CPU {value['cpu_pct']:5.1f}% of a core")  # fmt: skip
    print(f"{'messages':>28}: {results['delivered']} delivered of {results['expected']} "
          f"({results['posted']} events x {args.streams} streams)")  # fmt: skip
    if "latency_ms" in results:
        print(f"{'post -> receipt':>28}: {results['latency_ms']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
