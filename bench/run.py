"""Run every benchmark on this machine against a throwaway Redis; print a table and write
``bench/results/latest.json``. Each figure is compared with a baseline measured in the same run.

    scripts/bench            # or: .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from incidents.store.embedded import EmbeddedRedis, free_port  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"
UVICORN_FLAGS = ["--no-access-log", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "commit": commit + ("-dirty" if dirty else ""),
    }


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], env: dict[str, str], ready_url: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, cwd=ROOT)
    try:
        if ready_url:
            wait_http(ready_url)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wrk(url: str, script: Path, seconds: int, connections: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    return {"rps": rps, "requests": total, "non2xx": errors, "good_rps": rps * (1 - errors / max(total, 1))}


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.tmp = Path(tempfile.mkdtemp(prefix="incidents-bench-"))
        self.results: dict[str, Any] = {"machine": machine()}
        self.redis = EmbeddedRedis(self.tmp / "redis", os.environ, appendonly=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env.update(
            {
                "INCIDENTS_REDIS_URL": self.redis.url,
                "INCIDENTS_ADMIN_TOKEN": TOKEN,
                "INCIDENTS_ALLOW_PRIVATE_SINKS": "true",
                "INCIDENTS_SCHEMAS_DIR": str(ROOT / "schemas"),
                "INCIDENTS_POLICIES_DIR": str(ROOT / "policies"),
                "BENCH_TOKEN": TOKEN,
            }
        )
        env.update(extra)
        return env

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.close()

    def gateway(self, port: int) -> Any:
        env = self.env(INCIDENTS_PORT=str(port))
        return process(
            [sys.executable, "-m", "uvicorn", "incidents.cli.runner:app_from_environ", "--factory",
             "--port", str(port), *UVICORN_FLAGS],
            env, f"http://127.0.0.1:{port}/readyz",
        )

    def declare(self, base: str, count: int) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents+json"}
        with httpx.Client(base_url=base, headers=headers) as c:
            for n in range(count):
                ev = {"specversion": "1.0", "id": f"declare-{n}", "source": "/bench", "type": "im.incident.declare",
                      "imincidentid": f"BENCH-{n}", "data": {"title": "bench", "severity": "SEV3", "service": "bench"}}
                r = c.post("/v1/events", content=json.dumps(ev))
                assert r.status_code in (200, 202), r.text

    def ingest(self) -> None:
        seconds = 5 if self.quick else 15
        script = ROOT / "bench" / "note.lua"
        port = free_port()
        self.flush()
        with self.gateway(port) as gw:
            base = f"http://127.0.0.1:{port}"
            self.declare(base, 100)
            wrk(base + "/v1/events", script, 2, 64, self.env(BENCH_RUN="warm"))
            result = wrk(base + "/v1/events", script, seconds, 64, self.env(BENCH_RUN="ingest"))
            self.results["rss_mb_api"] = round(peak_rss_mb(gw.pid), 1)
        port = free_port()
        with process(
            [sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port), *UVICORN_FLAGS],
            self.env(), None,
        ):
            wait_http(f"http://127.0.0.1:{port}/")
            base = f"http://127.0.0.1:{port}"
            wrk(base + "/v1/events", script, 2, 64, self.env(BENCH_RUN="warm"))
            bare = wrk(base + "/v1/events", script, seconds, 64, self.env(BENCH_RUN="bare"))
        self.results["ingest_eps"] = round(result["good_rps"], 1)
        self.results["ingest_errors"] = result["non2xx"]
        self.results["ingest_baseline_rps"] = round(bare["good_rps"], 1)
        self.results["ingest_ratio"] = round(result["good_rps"] / bare["good_rps"], 3)

    def run(self, parts: list[str]) -> dict[str, Any]:
        self.redis.start()
        try:
            steps: dict[str, Callable[[], None]] = {"ingest": self.ingest}
            for name in parts:
                steps[name]()
        finally:
            self.redis.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    parser.add_argument("parts", nargs="*", default=["ingest"], help="which benchmarks to run")
    args = parser.parse_args()
    results = Bench(args.quick).run(args.parts)
    out = ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
