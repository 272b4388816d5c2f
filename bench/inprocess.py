"""The API's CPU per accepted event, in process: the app called directly (no HTTP server, no
load generator) with a real Redis, 64 concurrent loops posting the notes of ``note.lua`` over
100 declared incidents, one subscription matching them. Less sensitive to a loaded machine
than the HTTP benchmark, and it can compare builds: each source tree given is measured in its
own process (its ``src`` first on the path, its schemas and policies), the trees alternating
round after round against the same Redis.

    .venv/bin/python bench/inprocess.py [--rounds 5] [--requests 10000] [TREE ...]

TREE defaults to this checkout; an older build is a ``git worktree add /tmp/perf-<sha> <sha>``.
Prints each run and, per tree, the median and the fastest of the rounds (CPU time of the
process per request, in us); writes ``bench/results/inprocess.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105  # a throwaway local token
INCIDENTS = 100
CONCURRENCY = 64
WARM_UP = 3000

Scope = dict[str, Any]


def note(n: int, run: str) -> bytes:
    """The note ``note.lua`` sends: 1 KB of data, a unique id, one of 100 incidents."""
    return (
        f'{{"specversion":"1.0","id":"{run}-{n}","source":"/bench","type":"im.incident.note",'
        f'"imincidentid":"BENCH-{n % INCIDENTS}","time":"2026-01-01T00:00:00Z",'
        f'"data":{{"text":"{"x" * 800}"}}}}'
    ).encode()


async def measure(tree: Path, redis_url: str, requests: int) -> dict[str, Any]:
    """One run in this process (whose path starts with ``tree``'s src)."""
    import redis

    import incidents
    from incidents.app import create_app
    from incidents.settings import Settings

    assert Path(incidents.__file__).is_relative_to(tree), f"{incidents.__file__} is not {tree}'s"
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    env = {
        "INCIDENTS_REDIS_URL": redis_url,
        "INCIDENTS_ADMIN_TOKEN": TOKEN,
        "INCIDENTS_SCHEMAS_DIR": str(tree / "schemas"),
        "INCIDENTS_POLICIES_DIR": str(tree / "policies"),
        "INCIDENTS_ALLOW_PRIVATE_SINKS": "true",
        "INCIDENTS_ALLOW_INSECURE_SINKS": "true",
    }
    app = create_app(Settings.from_env(env), server_process=True)
    auth = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {TOKEN}".encode())]
    events = [*auth, (b"content-type", b"application/cloudevents+json")]

    async def call(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client never leaves
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    startup: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    startup.put_nowait({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(lifespan_scope, startup.get, lifespan_send))
    await started.wait()
    for n in range(INCIDENTS):
        declare = {
            "specversion": "1.0",
            "id": f"declare-{n}",
            "source": "/bench",
            "type": "im.incident.declare",
            "imincidentid": f"BENCH-{n}",
            "data": {"title": "bench", "severity": "SEV3", "service": "bench"},
        }
        assert await call("/v1/events", json.dumps(declare).encode(), events) in (200, 202)
    sub = {"sink": "http://127.0.0.1:9/hook", "protocol": "HTTP", "types": ["im.incident.note"]}
    json_headers = [*auth, (b"content-type", b"application/json")]
    assert await call("/v1/subscriptions", json.dumps(sub).encode(), json_headers) == 201

    async def load(count: int, run: str) -> int:
        numbers = iter(range(count))
        refused = 0

        async def loop() -> None:
            nonlocal refused
            for n in numbers:
                if await call("/v1/events", note(n, run), events) != 202:
                    refused += 1

        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        return refused

    await load(WARM_UP, "warm")
    cpu, wall = time.process_time(), time.perf_counter()
    refused = await load(requests, "measured")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    startup.put_nowait({"type": "lifespan.shutdown"})
    await lifespan
    return {
        "tree": str(tree),
        "cpu_us": round(cpu / requests * 1e6, 1),
        "wall_us": round(wall / requests * 1e6, 1),
        "refused": refused,
        "load": round(os.getloadavg()[0], 2),
    }


def child(tree: Path, redis_url: str, requests: int) -> None:
    try:
        import uvloop

        result = uvloop.run(measure(tree, redis_url, requests))
    except ImportError:
        result = asyncio.run(measure(tree, redis_url, requests))
    print(json.dumps(result), flush=True)


def compare(trees: list[Path], rounds: int, requests: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from incidents.store.embedded import EmbeddedRedis

    runs: dict[str, list[float]] = {str(t): [] for t in trees}
    with tempfile.TemporaryDirectory(prefix="incidents-inprocess-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis", os.environ, appendonly=True)
        redis.start()
        try:
            for _ in range(rounds):
                for tree in trees:
                    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
                    args = ["--child", str(tree), "--redis-url", redis.url]
                    out = subprocess.run(
                        [sys.executable, __file__, *args, "--requests", str(requests)],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    result = json.loads(out.strip().splitlines()[-1])
                    print(json.dumps(result), flush=True)
                    runs[str(tree)].append(result["cpu_us"])
        finally:
            redis.stop()
    return {
        tree: {
            "median_cpu_us": round(statistics.median(values), 1),
            "fastest_cpu_us": min(values),
            "runs": values,
        }
        for tree, values in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child.resolve(), args.redis_url, args.requests)
        return 0
    summary = compare([t.resolve() for t in args.trees], args.rounds, args.requests)
    for tree, figures in summary.items():
        print(f"{tree}: median {figures['median_cpu_us']} us, fastest {figures['fastest_cpu_us']}")
    out = ROOT / "bench" / "results" / "inprocess.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
