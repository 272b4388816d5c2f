"""Run every benchmark on this machine against a throwaway Redis; print a table and write
``bench/results/latest.json``. Each figure is compared with a baseline measured in the same run.

    scripts/bench            # or: .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from incidents.store.embedded import EmbeddedRedis, free_port  # noqa: E402  # after the path

TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105  # a throwaway local token
UVICORN_FLAGS = [
    "--no-access-log",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
]


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
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
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


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the kernel's ephemeral range (so
    connections opened meanwhile cannot take one of them)."""
    for base in range(20000 + (os.getpid() % 5000), 32768 - count, count):
        try:
            with ExitStack() as stack:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports below 32768")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
def process(
    args: list[str], env: dict[str, str], ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
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


def wrk(
    url: str, script: Path, seconds: int, connections: int, env: dict[str, str]
) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    return {
        "rps": rps,
        "requests": total,
        "non2xx": errors,
        "good_rps": rps * (1 - errors / max(total, 1)),
    }


def note(event_id: str, incident: str | None, text: str = "x" * 800) -> dict[str, Any]:
    """An ``im.incident.note`` event as the benchmarks send it (no incident: a raw payload)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/bench",
        "type": "im.incident.note",
    }
    if incident is not None:
        event["imincidentid"] = incident
    event["data"] = {"text": text}
    return event


def declaration(event_id: str, incident: str, source: str = "/bench") -> dict[str, Any]:
    """An ``im.incident.declare`` event as the benchmarks send it."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "im.incident.declare",
        "imincidentid": incident,
        "data": {"title": "bench", "severity": "SEV3", "service": "bench"},
    }


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def signed_headers(hook: Any, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for one payload, signed by an independent library."""
    msg_id = "msg_" + str(id(body))
    now = datetime.now(tz=UTC)
    return {
        "content-type": "application/cloudevents+json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": hook.sign(msg_id, now, body.decode()),
    }


async def raw_client(url: str, bodies: list[bytes], secret: str, concurrency: int) -> float:
    """The delivery baseline: post signed payloads with asyncio httpx, ``concurrency`` at once."""
    from standardwebhooks import Webhook

    hook = Webhook(secret)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=15) as client:

        async def worker() -> None:

            while not queue.empty():
                body = queue.get_nowait()
                headers = signed_headers(hook, body)
                r = await client.post(url, content=body, headers=headers)
                r.raise_for_status()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - start


async def aiohttp_client(url: str, bodies: list[bytes], secret: str, concurrency: int) -> float:
    """Like ``raw_client`` with aiohttp, the faster asyncio HTTP client."""
    import aiohttp
    from standardwebhooks import Webhook

    hook = Webhook(secret)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                headers = signed_headers(hook, body)
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    r.raise_for_status()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - start


async def paced_sender(
    base: str, rate: int, seconds: int, incidents: int = 100
) -> dict[str, float]:
    """Open-loop load: send ``rate`` events a second for ``seconds``, spread over
    ``incidents``; return id -> send time."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents+json"}
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    total = rate * seconds
    async with aiohttp.ClientSession(base, headers=headers) as client:

        async def one(n: int) -> None:
            event_id = f"e2e-{n}"
            body = json.dumps(note(event_id, f"BENCH-{n % incidents}"))
            sent[event_id] = time.time()
            async with client.post("/v1/events", data=body) as r:
                await r.read()
                r.raise_for_status()
            acked[event_id] = time.time() - sent[event_id]

        start = time.monotonic()
        tasks = []
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    ack = sorted(acked.values())
    print(
        f"ingest answer p50 {percentile(ack, 50) * 1000:.1f} ms, p99 {percentile(ack, 99) * 1000:.1f} ms"  # noqa: E501  # one printed line
    )
    return sent


class Bench:
    def __init__(self, quick: bool, appendfsync: str = "always") -> None:
        self.quick, self.appendfsync = quick, appendfsync
        self.tmp = Path(tempfile.mkdtemp(prefix="incidents-bench-"))
        self.results: dict[str, Any] = {"machine": machine()}
        self.results["commit"] = self.results["machine"]["commit"]
        self.redis = EmbeddedRedis(self.tmp / "redis", os.environ, appendonly=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env.update(
            {
                "INCIDENTS_REDIS_URL": self.redis.url,
                "INCIDENTS_ADMIN_TOKEN": TOKEN,
                "INCIDENTS_ALLOW_PRIVATE_SINKS": "true",
                "INCIDENTS_ALLOW_INSECURE_SINKS": "true",
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

    def uvicorn(self, target: str, port: int, ready_path: str, *extra: str) -> Any:
        """``target`` under uvicorn with the benchmark's settings, once it answers."""
        return process(
            [sys.executable, "-m", "uvicorn", target, "--port", str(port), *UVICORN_FLAGS, *extra],
            self.env(INCIDENTS_PORT=str(port)),
            f"http://127.0.0.1:{port}{ready_path}",
        )

    def gateway(self, port: int, **extra: str) -> Any:
        """The API as users run it: ``incidents serve`` (uvicorn with the gateway's own HTTP
        protocol, which bounds request heads and writes each answer in one write)."""
        return process(
            [sys.executable, "-m", "incidents", "serve"],
            self.env(INCIDENTS_PORT=str(port), INCIDENTS_HOST="127.0.0.1", **extra),
            f"http://127.0.0.1:{port}/readyz",
        )

    def declare(self, base: str, count: int) -> None:
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/cloudevents+json",
        }
        with httpx.Client(base_url=base, headers=headers) as c:
            for n in range(count):
                ev = declaration(f"declare-{n}", f"BENCH-{n}")
                r = c.post("/v1/events", content=json.dumps(ev))
                assert r.status_code in (200, 202), r.text

    def load(
        self, base: str, pid: int, run: str, incidents: int = 100
    ) -> tuple[dict[str, float], float]:
        """Warm up, then drive ``base`` with wrk and note.lua (notes spread over ``incidents``);
        the result and the server's CPU seconds during the measured part."""
        script, url = ROOT / "bench" / "note.lua", base + "/v1/events"
        spread = str(incidents)
        wrk(url, script, 2, 64, self.env(BENCH_RUN=f"warm-{run}", BENCH_INCIDENTS=spread))
        cpu = cpu_seconds(pid)
        result = wrk(
            url,
            script,
            5 if self.quick else 15,
            64,
            self.env(BENCH_RUN=run, BENCH_INCIDENTS=spread),
        )
        return result, cpu_seconds(pid) - cpu

    def ingest(self) -> None:
        """Accepted events/s against the bare endpoint, as deployed: routing on (one
        subscription matches every note) and one worker running beside the API; notes spread
        over 100 incidents, then all on one hot incident."""
        port, rport = free_port(), free_port()
        self.flush()
        with self.receiver(rport, 1), self.gateway(port) as gw:
            base = f"http://127.0.0.1:{port}"
            self.declare(base, 100)
            self.subscribe(base, f"http://127.0.0.1:{rport}/hook")
            with self.workers(1):
                spread, spread_cpu = self.load(base, gw.pid, "ingest", 100)
                hot, hot_cpu = self.load(base, gw.pid, "hot", 1)
            # The spread load again with the worker stopped: what sharing the cores with it
            # costs (the API does the same work per event either way).
            alone, alone_cpu = self.load(base, gw.pid, "alone", 100)
            self.results["rss_mb_api"] = round(peak_rss_mb(gw.pid), 1)
        port = free_port()
        with self.uvicorn("bench.bare:app", port, "/") as bare_proc:
            bare, bare_cpu = self.load(f"http://127.0.0.1:{port}", bare_proc.pid, "bare")
        self.results["ingest_eps"] = round(spread["good_rps"], 1)
        self.results["ingest_errors"] = spread["non2xx"]
        self.results["ingest_baseline_rps"] = round(bare["good_rps"], 1)
        self.results["ingest_ratio"] = round(spread["good_rps"] / bare["good_rps"], 3)
        self.results["ingest_noworker_eps"] = round(alone["good_rps"], 1)
        self.results["ingest_noworker_ratio"] = round(alone["good_rps"] / bare["good_rps"], 3)
        self.results["ingest_noworker_api_cpu_us"] = round(
            alone_cpu / max(alone["requests"], 1) * 1e6, 1
        )
        self.results["hot_eps"] = round(hot["good_rps"], 1)
        self.results["hot_errors"] = hot["non2xx"]
        # One hot incident against the same events spread over 100 incidents.
        self.results["hot_ratio"] = round(hot["good_rps"] / spread["good_rps"], 3)
        # CPU time of the server process per request: what bounds each side on a busy machine.
        self.results["ingest_api_cpu_us"] = round(spread_cpu / max(spread["requests"], 1) * 1e6, 1)
        self.results["hot_api_cpu_us"] = round(hot_cpu / max(hot["requests"], 1) * 1e6, 1)
        self.results["ingest_bare_cpu_us"] = round(bare_cpu / max(bare["requests"], 1) * 1e6, 1)

    # ---- delivery, end-to-end latency, fan-out -------------------------------------------

    def receiver(self, base_port: int, ports: int) -> Any:
        return process(
            [
                sys.executable,
                str(ROOT / "bench" / "receiver.py"),
                "--base-port",
                str(base_port),
                "--ports",
                str(ports),
            ],
            self.env(),
            f"http://127.0.0.1:{base_port + ports - 1}/stats",
        )

    @contextmanager
    def workers(self, count: int, **extra: str) -> Iterator[list[subprocess.Popen[bytes]]]:
        with ExitStack() as stack:
            yield [
                stack.enter_context(
                    process([sys.executable, "-m", "incidents", "worker"], self.env(**extra))
                )
                for _ in range(count)
            ]

    @staticmethod
    def worker_rss(procs: list[subprocess.Popen[bytes]]) -> float:
        """The largest peak RSS among the worker processes and their children."""
        pids = [p.pid for p in procs]
        for p in procs:
            try:
                children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
                pids += [int(c) for c in children]
            except OSError:
                pass
        return max((peak_rss_mb(pid) for pid in pids), default=0.0)

    def subscribe(self, base: str, sink: str) -> dict[str, Any]:
        r = httpx.post(
            base + "/v1/subscriptions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"sink": sink, "protocol": "HTTP", "types": ["im.incident.note"]},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    @staticmethod
    def received(stats_url: str) -> int:
        return int(httpx.get(stats_url, timeout=10).json()["count"])

    @staticmethod
    def wait_count(stats_url: str, target: int, timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if Bench.received(stats_url) >= target:
                return time.monotonic() - start
            time.sleep(0.02)
        raise RuntimeError(f"only {Bench.received(stats_url)} of {target} arrived in {timeout}s")

    def post_notes(self, base: str, count: int, incidents: int, tag: str) -> None:
        """Store ``count`` notes quickly through the batch endpoint."""
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/cloudevents-batch+json",
        }
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            for start in range(0, count, 200):
                batch = [
                    note(f"{tag}-{n}", f"BENCH-{n % incidents}")
                    for n in range(start, min(start + 200, count))
                ]
                r = c.post("/v1/events", content=json.dumps(batch))
                assert r.status_code == 202, r.text

    def delivery(self) -> None:
        from incidents.worker.jobs import LANES_IN_FLIGHT

        total = 3000 if self.quick else 10000
        concurrency = 2 * LANES_IN_FLIGHT  # what 2 workers keep in flight at most
        port, rport = free_port(), free_port()
        self.flush()
        with self.receiver(rport, 1), self.gateway(port) as gw:
            base = f"http://127.0.0.1:{port}"
            stats = f"http://127.0.0.1:{rport}/stats"
            self.declare(base, 1000)
            sub = self.subscribe(base, f"http://127.0.0.1:{rport}/hook")
            self.post_notes(base, total, 1000, "deliv")
            with self.workers(2) as procs:
                elapsed = self.wait_count(stats, total, 600)
                self.results["rss_mb_worker"] = round(self.worker_rss(procs), 1)
            self.results["rss_mb_api"] = max(
                self.results.get("rss_mb_api", 0), round(peak_rss_mb(gw.pid), 1)
            )
            httpx.post(f"http://127.0.0.1:{rport}/reset")
            bodies = [json.dumps(note(f"raw-{n}", None)).encode() for n in range(total)]
            hook = f"http://127.0.0.1:{rport}/hook"
            raw_elapsed = asyncio.run(raw_client(hook, bodies, sub["secret"], concurrency))
            aio_elapsed = asyncio.run(aiohttp_client(hook, bodies, sub["secret"], concurrency))
        self.results["delivery_eps"] = round(total / elapsed, 1)
        self.results["delivery_baseline_rps"] = round(total / raw_elapsed, 1)
        self.results["delivery_ratio"] = round(raw_elapsed / elapsed, 3)
        # A stronger reference than the specified httpx client: aiohttp, same payloads.
        self.results["delivery_aiohttp_rps"] = round(total / aio_elapsed, 1)
        self.results["delivery_ratio_aiohttp"] = round(aio_elapsed / elapsed, 3)
        self.results["delivery_concurrency"] = concurrency

    def e2e(self) -> None:
        """Post to receipt with two workers: 200 events/s on one incident, and 1,000 events/s
        spread over 100 incidents."""
        for name, rate, incidents in (("e2e_hot", 200, 1), ("e2e_spread", 1000, 100)):
            self.e2e_at(name, rate, incidents)

    def e2e_at(self, name: str, rate: int, incidents: int) -> None:
        seconds = 5 if self.quick else 20
        port, rport = free_port(), free_port()
        self.flush()
        with self.receiver(rport, 1), self.gateway(port), self.workers(2):
            base = f"http://127.0.0.1:{port}"
            self.declare(base, incidents)
            self.subscribe(base, f"http://127.0.0.1:{rport}/hook")
            time.sleep(1.0)  # let the workers pick up the new subscription
            sent = asyncio.run(paced_sender(base, rate, seconds, incidents))
            self.wait_count(f"http://127.0.0.1:{rport}/stats", len(sent), 120)
            arrivals = httpx.get(f"http://127.0.0.1:{rport}/stats?detail=1", timeout=30).json()[
                "arrivals"
            ]
        timed = sorted(
            (t0, (arrivals[f"{event_id}|/hook"] - t0) * 1000) for event_id, t0 in sent.items()
        )
        if os.environ.get("BENCH_TRACE"):
            start = timed[0][0]
            for t0, ms in timed:
                if ms > 100:
                    print(f"slow: sent at +{t0 - start:.2f}s took {ms:.0f} ms")
        latencies = sorted(ms for _, ms in timed)
        self.results[f"{name}_rate"] = rate
        self.results[f"{name}_events"] = len(latencies)
        self.results[f"{name}_p50_ms"] = round(percentile(latencies, 50), 2)
        self.results[f"{name}_p99_ms"] = round(percentile(latencies, 99), 2)

    def fanout(self) -> None:
        port, rport = free_port(), free_port_block(100)
        self.flush()
        with self.receiver(rport, 100), self.gateway(port), self.workers(2):
            base = f"http://127.0.0.1:{port}"
            self.declare(base, 1)
            for r in range(100):
                for path in range(10):
                    self.subscribe(base, f"http://127.0.0.1:{rport + r}/hook{path}")
            time.sleep(1.0)  # let the workers pick up the new subscriptions
            stats = f"http://127.0.0.1:{rport}/stats"
            headers = {
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/cloudevents+json",
            }
            # A first event warms every connection pool; the measured one follows.
            for tag in ("warm", "fan"):
                before = self.received(stats)  # one process serves all 100 ports: one count
                ev = note(f"{tag}-1", "BENCH-0", "fan-out")
                start = time.monotonic()
                assert (
                    httpx.post(
                        base + "/v1/events", content=json.dumps(ev), headers=headers
                    ).status_code
                    == 202
                )
                while True:
                    now = self.received(stats)
                    if now - before >= 1000 or time.monotonic() - start > 120:
                        break
                    time.sleep(0.05)
                elapsed = time.monotonic() - start
                if tag == "warm":  # connections to 100 receivers opened on the way
                    self.results["fanout_1000_cold_s"] = round(elapsed, 3)
        self.results["fanout_1000_s"] = round(elapsed, 3)
        self.results["fanout_delivered"] = now - before

    # ---- span export ------------------------------------------------------------------------

    def tracing(self) -> None:
        """What exporting spans costs: the ingest load (notes over 100 incidents, one
        subscription, one worker delivering beside the API) with export off, then on (every
        request a sampled trace, sent over OTLP/HTTP to a sink that discards it), then on
        with 5% of the traces sampled. Events/s, and CPU per event of the API and of the
        worker."""
        sink = free_port()
        measured: dict[str, tuple[dict[str, float], float, float]] = {}
        with self.uvicorn("bench.otlp_sink:app", sink, "/v1/traces"):
            exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}"}
            sampled = {
                **exporting,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.05",
            }
            for name, extra in (("off", {}), ("on", exporting), ("sampled", sampled)):
                self.flush()
                port, rport = free_port(), free_port()
                with self.receiver(rport, 1), self.gateway(port, **extra) as gw:
                    base = f"http://127.0.0.1:{port}"
                    self.declare(base, 100)
                    self.subscribe(base, f"http://127.0.0.1:{rport}/hook")
                    with self.workers(1, **extra) as procs:
                        worker = cpu_seconds(procs[0].pid)
                        result, api = self.load(base, gw.pid, f"tracing-{name}", 100)
                        worker = cpu_seconds(procs[0].pid) - worker
                measured[name] = (result, api, worker)
        for name, (result, api, worker) in measured.items():
            requests = max(result["requests"], 1)
            self.results[f"tracing_{name}_eps"] = round(result["good_rps"], 1)
            self.results[f"tracing_{name}_api_cpu_us"] = round(api / requests * 1e6, 1)
            self.results[f"tracing_{name}_worker_cpu_us"] = round(worker / requests * 1e6, 1)
        off = measured["off"][0]["good_rps"]
        self.results["tracing_ratio"] = round(measured["on"][0]["good_rps"] / off, 3)
        self.results["tracing_sampled_ratio"] = round(measured["sampled"][0]["good_rps"] / off, 3)

    def run(self, parts: list[str]) -> dict[str, Any]:
        self.redis.start()
        if self.appendfsync != "always":  # the embedded server fsyncs every write by default
            import redis

            with redis.Redis.from_url(self.redis.url) as client:
                client.config_set("appendfsync", self.appendfsync)
        self.results["appendfsync"] = self.appendfsync
        try:
            steps: dict[str, Callable[[], None]] = {
                "ingest": self.ingest,
                "delivery": self.delivery,
                "e2e": self.e2e,
                "fanout": self.fanout,
                "tracing": self.tracing,
            }
            for name in parts:
                steps[name]()
        finally:
            self.redis.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    parser.add_argument(
        "--appendfsync",
        choices=["always", "everysec"],
        default="always",
        help="Redis fsync policy: every write (as docker-compose.yml runs it) or once a second",
    )
    parser.add_argument(
        "parts",
        nargs="*",
        default=["ingest", "delivery", "e2e", "fanout", "tracing"],
        help="which benchmarks to run",
    )
    args = parser.parse_args()
    results = Bench(args.quick, args.appendfsync).run(args.parts)
    print_results(results)
    written(results, "latest")
    return 0


def print_results(results: dict[str, Any]) -> None:
    """One figure a line, names aligned."""
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")


def written(results: dict[str, Any], name: str) -> Path:
    """Write ``results`` to bench/results/<name>.json and say where."""
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
