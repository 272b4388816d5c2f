from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded_cluster import ClusterUnavailable, EmbeddedCluster
from tests import fast_tier, scheduling
from tests.delivery_support import Receiver, Workers, receiver_app
from tests.fast_tier import fast_tier_guard  # noqa: F401 (an autouse fixture: importing it here is what applies it)
from tests.support import ADMIN_TOKEN, TEST_TLS, SharedServer, admin_client, running_redis

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The long tests first, one pile per xdist worker, so that they run alongside the many
    short ones instead of after them (``tests.scheduling``). Compiled modules are cached for
    this run and the processes it starts, even where PYTHONDONTWRITEBYTECODE is set: without,
    each xdist worker, and each of the dozens of gateway processes the tests start, compiles
    the gateway's modules (and each worker rewrites the tests' assertions) afresh."""
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    scheduling.register(config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier marked (``tests.fast_tier``), before ``-m fast`` selects it."""
    fast_tier.mark(items)


def _own_database(url: str, worker: str) -> str:
    """``url`` on a database of its own for xdist worker ``gwN`` (N + 1), so that parallel
    workers sharing one Redis never flush each other's data."""
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{int(worker[2:]) + 1}"))


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """A test that runs a command in-process which sends logs to the stderr of the moment
    (``incidents worker``, say) leaves the root logger as it found it, so no later test logs
    into a stream that was captured and closed since."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _global_key_names() -> Iterator[None]:
    """Every test starts and ends with the global keys named for one Redis: one that builds
    a gateway on a cluster in process (``create_app`` names them for it, as a process does)
    leaves no ``{g}`` names to the next."""
    with keys.cluster_names(False):
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server for the whole run, one per xdist worker (or
    INCIDENTS_TEST_REDIS_URL, a database of it per worker)."""
    external = os.environ.get("INCIDENTS_TEST_REDIS_URL")
    if external:
        yield _own_database(external, os.environ.get("PYTEST_XDIST_WORKER", ""))
        return
    with running_redis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A throwaway Redis Cluster on loopback (3 primaries, 3 replicas) for the whole run, one
    per xdist worker; skipped, saying why, where no redis-server can make one."""
    try:
        cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), os.environ)
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))
    with cluster:
        yield cluster


@pytest.fixture
def cluster(redis_cluster: EmbeddedCluster) -> Iterator[EmbeddedCluster]:
    """The test cluster, whole (a node a test before killed is started again) and flushed
    before and after each test."""
    redis_cluster.heal()
    redis_cluster.flush()
    try:
        yield redis_cluster
    finally:
        redis_cluster.flush()


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
    with SharedServer.started() as server:
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
    with admin_client(gateway, timeout=10) as c:
        yield c


@pytest.fixture
def anon(gateway: str) -> Iterator[httpx.Client]:
    """An HTTP client for the gateway with no credentials."""
    with httpx.Client(verify=TEST_TLS, base_url=gateway, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[SharedServer]:
    """The uvicorn server, in a thread, on which each test's webhook receiver is mounted."""
    with SharedServer.started() as server:
        yield server


@pytest.fixture
def rx(receiver_server: SharedServer) -> Iterator[Receiver]:
    """A real webhook receiver that verifies every signature with ``standardwebhooks``."""
    found = Receiver()
    with receiver_server.mounted(receiver_app(found)) as url:
        found.url = url
        yield found


@pytest.fixture
def workers(settings: Settings) -> Iterator[Workers]:
    """The routing and delivery workers, run in this process."""
    found = Workers(settings)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def keyless(settings: Settings, shared_server: SharedServer) -> Iterator[httpx.Client]:
    """The API as it ran before a key was set: no INCIDENTS_SECRET_KEY, so signing secrets are
    stored plain and connector credentials are refused."""
    app = create_app(settings.replace(secret_key=None))
    with (
        shared_server.mounted(app) as url,
        admin_client(url, timeout=10) as c,
    ):
        yield c
