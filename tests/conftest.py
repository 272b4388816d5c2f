from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.settings import Settings
from incidents.store.embedded import EmbeddedRedis
from tests.delivery_support import Receiver, Workers, receiver
from tests.support import ADMIN_TOKEN, SharedServer, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server for the whole run (or INCIDENTS_TEST_REDIS_URL)."""
    external = os.environ.get("INCIDENTS_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), os.environ, appendonly=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The test Redis, flushed before and after each test."""
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    try:
        yield redis_server
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        admin_token=ADMIN_TOKEN,
        schemas_dir=ROOT / "schemas",
        policies_dir=ROOT / "policies",
        allow_private_sinks=True,
        allow_insecure_sinks=True,
        retry_schedule=(0.2, 0.4, 0.8),
        delivery_timeout=2.0,
        data_dir=tmp_path / "data",
    )


@pytest.fixture(scope="session")
def shared_server() -> Iterator[SharedServer]:
    """One uvicorn server, in a thread, for the whole run; each test mounts its own app."""
    server = SharedServer()
    with serve_in_thread(server) as url:
        server.url = url
        yield server


@pytest.fixture
def gateway(settings: Settings, shared_server: SharedServer) -> Iterator[str]:
    """A fresh real app on this test's settings, against the test Redis, served over HTTP by
    the session's uvicorn server; yields its URL."""
    with shared_server.mounted(create_app(settings)) as url:
        yield url


@pytest.fixture
def client(gateway: str) -> Iterator[httpx.Client]:
    """An HTTP client for the gateway, authenticated as admin."""
    with httpx.Client(
        base_url=gateway, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    ) as c:
        yield c


@pytest.fixture
def anon(gateway: str) -> Iterator[httpx.Client]:
    """An HTTP client for the gateway with no credentials."""
    with httpx.Client(base_url=gateway, timeout=10) as c:
        yield c


@pytest.fixture
def rx() -> Iterator[Receiver]:
    """A real webhook receiver that verifies every signature with ``standardwebhooks``."""
    with receiver() as found:
        yield found


@pytest.fixture
def workers(settings: Settings) -> Iterator[Workers]:
    """The routing and delivery workers, run in this process."""
    found = Workers(settings)
    try:
        yield found
    finally:
        found.close()
