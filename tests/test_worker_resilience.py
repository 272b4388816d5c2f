"""Real ``incidents worker`` processes ride out a Redis restart: they back off, reconnect and
carry on, and every event the gateway acknowledged is delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from rq import Worker
from rq.registry import StartedJobRegistry

from incidents.settings import Settings
from incidents.store.embedded import EmbeddedRedis
from incidents.worker.process import QUEUES
from tests.delivery_support import Receiver, subscribe
from tests.support import admin_gateway, event, wait_for

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


@dataclass
class Outage:
    """A gateway against a private redis-server that persists with AOF, and worker processes."""

    redis: EmbeddedRedis
    settings: Settings
    client: httpx.Client
    logs: Path

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            INCIDENTS_REDIS_URL=str(self.settings.redis_url),
            INCIDENTS_SCHEMAS_DIR=str(self.settings.schemas_dir),
            INCIDENTS_POLICIES_DIR=str(self.settings.policies_dir),
            INCIDENTS_ALLOW_PRIVATE_SINKS="true",
            INCIDENTS_ALLOW_INSECURE_SINKS="true",
            INCIDENTS_RETRY_SCHEDULE=",".join(str(s) for s in self.settings.retry_schedule),
            INCIDENTS_DELIVERY_TIMEOUT="10",
        )
        with (self.logs / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "incidents", "worker"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_for_backoff(self, name: str) -> None:
        """Until worker ``name`` has found Redis gone and is backing off (rather than sleeping
        for a guess at how long that takes)."""
        wait_for(
            lambda: "Redis is unreachable" in self.log_of(name), 30, what=f"{name} backing off"
        )
        time.sleep(0.5)  # well inside the backoff loop, past the line that announces it

    def post(self, *events: dict[str, object]) -> set[str]:
        """Post each event on its own; the ids of those answered 202."""
        acknowledged: set[str] = set()
        for e in events:
            try:
                response = self.client.post(
                    "/v1/events", json=e, headers={"Content-Type": "application/cloudevents+json"}
                )
            except httpx.HTTPError:
                continue
            if response.status_code == 202:
                acknowledged.add(str(e["id"]))
            else:
                assert response.status_code == 503, response.text
        return acknowledged


@pytest.fixture
def outage(settings: Settings, tmp_path: Path) -> Iterator[Outage]:
    """The real app against a fresh redis-server with AOF on (fsync always)."""
    server = EmbeddedRedis(tmp_path / "redis", os.environ, appendonly=True)
    server.start()
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        durable = settings.replace(redis_url=server.url, retry_schedule=(0.5,) * 8)
        with (
            admin_gateway(durable) as client,
        ):
            yield Outage(server, durable, client, logs)
    finally:
        server.stop()


def delivered(rx: Receiver, path: str) -> set[str]:
    """Event ids that arrived verified, each webhook-id counted once."""
    seen: dict[str, str] = {}
    for r in rx.at(path):
        assert r.verified
        seen.setdefault(r.headers["webhook-id"], r.event["id"])
    return set(seen.values())


def incident_events(prefix: str, incidents: int) -> list[dict[str, object]]:
    declares = [
        event("im.incident.declare", imincidentid=f"{prefix}-{i}") for i in range(incidents)
    ]
    notes = [event("im.incident.note", imincidentid=f"{prefix}-{i}") for i in range(incidents)]
    return declares + notes


@pytest.mark.slow
def test_workers_ride_out_a_redis_restart_and_deliver_every_acknowledged_event(
    outage: Outage, rx: Receiver
) -> None:
    """Two worker processes survive Redis being killed and started again mid-delivery; every
    event answered 202, before, during or after the outage, reaches the sink."""
    subscribe(outage.client, rx, "/outage")
    rx.delay = 1.0  # deliveries are in flight when Redis goes away
    names = [f"worker-{i}" for i in range(WORKERS)]
    workers = [outage.start_worker(name) for name in names]
    try:
        with redis.Redis.from_url(outage.redis.url) as connection:
            wait_for(lambda: Worker.count(connection=connection) == WORKERS, 30)
        acknowledged = outage.post(*incident_events("INC-A", 20))
        wait_for(lambda: len(rx.at("/outage")) >= 5, 30)
        outage.redis.kill()  # no clean shutdown: what a crash looks like
        down_at = time.monotonic()
        acknowledged |= outage.post(*incident_events("INC-D", 2))  # 503s, most likely
        while time.monotonic() - down_at < 4:  # long enough for every part of a worker to notice
            time.sleep(0.1)
        outage.redis.start()
        back_at = time.time()
        rx.delay = 0.0
        acknowledged |= outage.post(*incident_events("INC-B", 20))
        assert len(acknowledged) >= 80
        wait_for(
            lambda: (
                acknowledged <= delivered(rx, "/outage")
                or any(w.poll() is not None for w in workers)
            ),
            90,
        )
        all_after = time.time() - back_at
        first_after = min((r.at for r in rx.at("/outage") if r.at >= back_at), default=0.0)
        alive = [w.poll() is None for w in workers]
        print(
            f"\nworkers alive: {alive}; acknowledged {len(acknowledged)}, delivered "
            f"{len(acknowledged & delivered(rx, '/outage'))}; first delivery "
            f"{first_after - back_at:.2f} s after Redis came back, all by {all_after:.2f} s; "
            f"{len(rx.at('/outage')) - len({r.headers['webhook-id'] for r in rx.at('/outage')})} "
            "sent twice (same webhook-id)"
        )
        assert all(alive), [outage.log_of(n) for n in names]
        assert acknowledged <= delivered(rx, "/outage")
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        codes = [w.wait(30) for w in workers]
    assert codes == [0] * WORKERS, [outage.log_of(n) for n in names]
    for name in names:
        assert "quitting" not in outage.log_of(name), outage.log_of(name)
    with redis.Redis.from_url(outage.redis.url) as connection:
        # The jobs the outage interrupted were settled, none is left "started" forever.
        for queue in QUEUES:
            assert (
                StartedJobRegistry(queue, connection=connection).get_job_count(cleanup=False) == 0
            )


@pytest.mark.slow
def test_a_worker_stops_promptly_on_sigterm_while_redis_is_down(outage: Outage) -> None:
    """A worker waiting out a Redis outage still honours SIGTERM at once, exiting 0."""
    worker = outage.start_worker("stopping")
    try:
        with redis.Redis.from_url(outage.redis.url) as connection:
            wait_for(lambda: Worker.count(connection=connection) == 1, 30)
        outage.redis.kill()
        outage.wait_for_backoff("stopping")
        assert worker.poll() is None, outage.log_of("stopping")
        worker.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = worker.wait(30)
        took = time.monotonic() - stopped_at
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert code == 0, outage.log_of("stopping")
    assert took < 5, outage.log_of("stopping")


@pytest.mark.slow
def test_a_worker_started_while_redis_is_down_waits_for_it(outage: Outage, rx: Receiver) -> None:
    """A worker that starts during an outage waits for Redis, then delivers."""
    subscribe(outage.client, rx, "/late")
    outage.redis.kill()
    worker = outage.start_worker("early")
    try:
        outage.wait_for_backoff("early")
        assert worker.poll() is None, outage.log_of("early")
        outage.redis.start()
        acknowledged = outage.post(event("im.incident.declare"))
        assert len(acknowledged) == 1
        wait_for(lambda: acknowledged <= delivered(rx, "/late"), 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    assert code == 0, outage.log_of("early")


@pytest.mark.slow
def test_a_worker_waiting_for_redis_at_start_up_stops_cleanly_on_sigterm(outage: Outage) -> None:
    """SIGTERM to a worker still waiting for Redis to start working ends it at once with 0."""
    outage.redis.kill()
    worker = outage.start_worker("waiting")
    try:
        outage.wait_for_backoff("waiting")
        assert worker.poll() is None, outage.log_of("waiting")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(5)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert code == 0, outage.log_of("waiting")
