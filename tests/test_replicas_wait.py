"""INCIDENTS_MIN_REPLICAS: the 202 waits for replicas to confirm the event (Redis WAIT)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.settings import Settings
from incidents.store.embedded import EmbeddedRedis, find_redis_server, free_port
from tests.support import ADMIN_TOKEN, TEST_TLS, event, running_redis, serve_in_thread

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis primary of this test's own (replicas attach to it, not to the shared one)."""
    with running_redis(tmp_path / "primary", appendonly=False) as server:
        yield server


class Replica:
    def __init__(self, primary: EmbeddedRedis, folder: Path, writable: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        args = [find_redis_server(os.environ), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(folder), "--save", "", "--appendonly", "no"]
        args += ["--replicaof", "127.0.0.1", str(primary.port)]
        if writable:  # as a demoted primary can look for a moment to a client that wrote to it
            args += ["--replica-read-only", "no"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.primary = redis.Redis(port=primary.port)

    def wait_in_sync(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.primary.info("replication")
            slave = info.get("slave0")
            if isinstance(slave, dict) and slave.get("offset") == info["master_repl_offset"]:
                return
            time.sleep(0.05)
        raise AssertionError(f"the replica did not catch up: {self.primary.info('replication')}")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.primary.close()


def _settings(settings: Settings, primary: EmbeddedRedis) -> Settings:
    return settings.replace(redis_url=primary.url, min_replicas=1, replica_timeout_ms=200)


def _post(client: httpx.Client, body: dict[str, object]) -> httpx.Response:
    return client.post("/v1/events", content=json.dumps(body), headers=STRUCTURED)


def test_too_few_replicas_is_503_the_event_stays_and_a_retry_is_200(
    settings: Settings, primary: EmbeddedRedis, tmp_path: Path
) -> None:
    """No replica confirms: 503 with Retry-After, yet the event is stored; retried once a
    replica has it, the same event is a duplicate answered 200."""
    declare = event()
    with (
        serve_in_thread(create_app(_settings(settings, primary))) as url,
        httpx.Client(verify=TEST_TLS, base_url=url, headers=AUTH, timeout=20) as client,
    ):
        started = time.monotonic()
        refused = _post(client, declare)
        assert refused.status_code == 503, refused.text
        assert time.monotonic() - started < 5
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert "INCIDENTS_MIN_REPLICAS" in refused.json()["detail"]
        stored = client.get(f"/v1/events/{declare['id']}")
        assert stored.status_code == 200, stored.text
        replica = Replica(primary, tmp_path / "replica")
        try:
            replica.wait_in_sync()
            retried = _post(client, declare)
            assert retried.status_code == 200, retried.text
            assert retried.json()["accepted"][0]["duplicate"] is True
        finally:
            replica.stop()


def test_with_a_replica_every_concurrent_event_is_202(
    settings: Settings, primary: EmbeddedRedis, tmp_path: Path
) -> None:
    """With a replica attached, events sent together (committed as a group) are all 202."""
    replica = Replica(primary, tmp_path / "replica")
    try:
        replica.wait_in_sync()
        with (
            serve_in_thread(create_app(_settings(settings, primary))) as url,
            httpx.Client(verify=TEST_TLS, base_url=url, headers=AUTH, timeout=20) as client,
            ThreadPoolExecutor(8) as pool,
        ):
            codes = list(pool.map(lambda _: _post(client, event()).status_code, range(40)))
            assert set(codes) == {202}
    finally:
        replica.stop()


def test_a_group_commit_short_of_replicas_is_503_for_all_and_stores_all(
    settings: Settings, primary: EmbeddedRedis
) -> None:
    """Concurrent events with no replica to confirm them: each is 503, and each is stored."""
    bodies = [event() for _ in range(24)]
    with (
        serve_in_thread(create_app(_settings(settings, primary))) as url,
        httpx.Client(verify=TEST_TLS, base_url=url, headers=AUTH, timeout=20) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        codes = list(pool.map(lambda body: _post(client, body).status_code, bodies))
        assert set(codes) == {503}
        for body in bodies:
            assert client.get(f"/v1/events/{body['id']}").status_code == 200


def test_a_server_that_stopped_being_the_primary_is_503_not_500(
    settings: Settings, primary: EmbeddedRedis, tmp_path: Path
) -> None:
    """When the server answering is a replica (demoted mid-failover) the WAIT after the
    acceptance script fails; the producer gets 503 with Retry-After, never a 500."""
    replica = Replica(primary, tmp_path / "replica", writable=True)
    try:
        replica.wait_in_sync()
        on_replica = settings.replace(
            redis_url=f"redis://127.0.0.1:{replica.port}/0", min_replicas=1, replica_timeout_ms=200
        )
        with (
            serve_in_thread(create_app(on_replica)) as url,
            httpx.Client(verify=TEST_TLS, base_url=url, headers=AUTH, timeout=10) as client,
        ):
            r = _post(client, event("im.incident.declare"))
    finally:
        replica.stop()
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] and "primary" in r.json()["detail"]
