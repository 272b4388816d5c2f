"""Real parts for the delivery tests: a webhook receiver that verifies every signature with
the independent ``standardwebhooks`` library, in-process RQ workers, and `incidents worker`
processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.delivery.lanes import Delivery, DeliveryState
from incidents.settings import Settings
from incidents.store.redis import connect
from incidents.worker.jobs import WorkerContext
from incidents.worker.process import make_worker
from incidents.worker.scheduler import JobScheduler
from tests.support import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
Reply = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


@dataclass
class Receiver:
    """Answers each path from its script of replies (then 200), recording every request."""

    url: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # path -> secret to verify with
    scripts: dict[str, list[Reply]] = field(default_factory=dict)  # by path or by event id
    received: list[Received] = field(default_factory=list)
    handshakes: list[dict[str, str]] = field(default_factory=list)
    handshake_reply: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.time  # what ``Received.at`` is read from

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def sink(self, path: str) -> str:
        return self.url + path

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        headers = dict(request.headers)
        if request.method == "OPTIONS":
            with self.lock:
                self.handshakes.append(headers)
            return Response(status_code=200, headers=self.handshake_reply)
        body = await request.body()
        secret = self.secrets.get(path)
        verified = False
        if secret is not None:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        event_id = headers.get("ce-id") or _event_id(body)
        with self.lock:
            self.received.append(Received(path, headers, body, verified, self.clock()))
            script = self.scripts.get(event_id) or self.scripts.get(path)
            status, reply_headers = script.pop(0) if script else (200, {})
        if pause := self.delays.get(path, self.delay):
            await asyncio.sleep(pause)
        return Response(b"ok" if status < 300 else b"nope", status, reply_headers)


def _event_id(body: bytes) -> str:
    try:
        return str(json.loads(body).get("id", ""))
    except (ValueError, AttributeError):
        return ""


def receiver_app(found: Receiver) -> Starlette:
    """The ASGI app that answers as ``found`` says, on every path."""
    return Starlette(routes=[Route("/{path:path}", found.handle, methods=["POST", "OPTIONS"])])


@contextmanager
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    with serve_in_thread(receiver_app(found)) as url:
        found.url = url
        yield found


def subscribe(client: httpx.Client, rx: Receiver, path: str, **fields: Any) -> dict[str, Any]:
    """Register ``rx``'s ``path`` as a sink; the receiver learns the secret to verify with."""
    response = client.post("/v1/subscriptions", json={"sink": rx.sink(path), **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    rx.secrets[path] = created["secret"]
    return created


def publish(client: httpx.Client, *events: dict[str, Any]) -> list[dict[str, Any]]:
    body = json.dumps(list(events))
    response = client.post(
        "/v1/events", content=body, headers={"Content-Type": "application/cloudevents-batch+json"}
    )
    assert response.status_code in (200, 202), response.text
    accepted: list[dict[str, Any]] = response.json()["accepted"]
    return accepted


class FakeClock:
    """Unix time that moves only when moved: by ``advance``, or by ``Workers.run_until``, which
    jumps it to the next lane due when nothing is due now (a retry, a Retry-After, the next
    rate window), so nothing waits out real time and nothing is sent before it is due."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Workers:
    """In-process RQ workers: the job scheduler and a burst worker, run until a condition holds; on
    ``clock`` (the workers' time: due lanes, leases, retries, the attempt log, signatures).
    ``connection`` reaches the data Redis, ``queue`` RQ's (the same client unless the settings
    give RQ a Redis of its own)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.clock = clock
        self.connection = connect(settings.redis_url)  # one Redis, Sentinel or a cluster
        queue_url = settings.queue_redis_url
        self.queue = self.connection if queue_url is None else redis.Redis.from_url(queue_url)
        self.context = WorkerContext.build(settings, clock)
        self.scheduler = JobScheduler(self.connection, settings, clock, queue=self.queue)

    def run_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.scheduler.step()
            make_worker(self.settings, self.queue, self.context).work(
                burst=True, logging_level="WARNING"
            )
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError("the condition did not hold in time")
            if isinstance(self.clock, FakeClock):
                self._to_next_due(self.clock)
            else:
                time.sleep(0.02)

    def _to_next_due(self, clock: FakeClock) -> None:
        """Move a fake clock to when the next lane is due (in any partition), if that is later
        than now."""
        pipe = self.connection.pipeline(transaction=False)
        for space in self.settings.layout:
            pipe.zrange(space.LANES_DUE, 0, 0, withscores=True)
        firsts = [float(found[0][1]) for found in pipe.execute() if found]
        due = min(firsts) if firsts else 0.0
        if due > clock.now:
            clock.now = due
        else:
            time.sleep(0.02)  # due now (or nothing queued): a routing job may be on its way

    def deliveries(self, client: httpx.Client, sub_id: str) -> list[dict[str, Any]]:
        response = client.get(f"/v1/subscriptions/{sub_id}/deliveries")
        assert response.status_code == 200, response.text
        attempts: list[dict[str, Any]] = response.json()["attempts"]
        return attempts[::-1]  # oldest first

    def close(self) -> None:
        self.connection.close()
        if self.queue is not self.connection:
            self.queue.close()


def stored_state(client: redis.Redis, delivery: Delivery) -> DeliveryState | None:
    """The state of a delivery's record as kept in Redis (None: it has none)."""
    key, field = delivery.place
    raw = cast(bytes | None, client.hget(key, field))
    return Delivery.decoded(delivery.id, raw).state if raw else None


def start_worker(
    settings: Settings, log: Path | None = None, *, job_seconds: float | None = None, **more: str
) -> subprocess.Popen[bytes]:
    """An `incidents worker` process on ``settings``; ``log``: a file for its output;
    ``job_seconds``: how long each deliver job works the lanes (``jobs.DELIVER_SECONDS``, 60 s)
    when a test needs jobs to end sooner; ``more``: further variables."""
    env = dict(os.environ)
    env.update(
        INCIDENTS_REDIS_URL=str(settings.redis_url),
        INCIDENTS_SCHEMAS_DIR=str(settings.schemas_dir),
        INCIDENTS_POLICIES_DIR=str(settings.policies_dir),
        INCIDENTS_ALLOW_PRIVATE_SINKS="true",
        INCIDENTS_ALLOW_INSECURE_SINKS="true",
        INCIDENTS_RETRY_SCHEDULE=",".join(str(s) for s in settings.retry_schedule),
        INCIDENTS_DELIVERY_TIMEOUT="10",
        **more,
    )
    if settings.secret_key is not None:
        env["INCIDENTS_SECRET_KEY"] = settings.secret_key
    if settings.queue_redis_url is not None:
        env["INCIDENTS_QUEUE_REDIS_URL"] = settings.queue_redis_url
    argv = [sys.executable, "-m", "incidents", "worker"]
    if job_seconds is not None:
        shorter = f"import incidents.worker.jobs as jobs; jobs.DELIVER_SECONDS = {job_seconds!r}"
        argv[1:3] = [
            "-c",
            f"{shorter}; import runpy; runpy.run_module('incidents', run_name='__main__')",
        ]
    if log is None:
        return subprocess.Popen(argv, env=env, cwd=ROOT)
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def fake_clock_workers(
    settings: Settings, rx: Receiver, start: float | None = None
) -> Iterator[Workers]:
    """Workers on a ``FakeClock`` (``workers.clock``) that ``rx`` reads its receipt times from
    too, so the time between two receipts is the time the workers waited between the sends."""
    clock = FakeClock(start)
    rx.clock = clock
    found = Workers(settings, clock)
    try:
        yield found
    finally:
        found.close()
