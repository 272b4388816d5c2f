"""No silent eviction: ``incidents serve``, ``worker`` and ``dev`` refuse a Redis whose
``maxmemory-policy`` is not ``noeviction`` (exit 2, naming the setting, the value and why),
and start with a warning against a Redis that will not say (``CONFIG`` renamed away)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from incidents.cli.main import main
from incidents.store.embedded import EmbeddedRedis, free_port
from incidents.store.redis_memory import check_eviction_policy
from tests.support import ADMIN_TOKEN, running_redis, wait_for

ROOT = Path(__file__).resolve().parent.parent
EVICTING = [
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


def gateway_env(redis_url: str, **more: str) -> dict[str, str]:
    """The environment of a gateway command against ``redis_url`` (none of the caller's own
    INCIDENTS_ settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_REDIS_URL=redis_url,
        INCIDENTS_ADMIN_TOKEN=ADMIN_TOKEN,
        INCIDENTS_SCHEMAS_DIR=str(ROOT / "schemas"),
        INCIDENTS_POLICIES_DIR=str(ROOT / "policies"),
        **more,
    )
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "incidents", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server of this module's own, started as `incidents dev` starts one."""
    with running_redis(tmp_path_factory.mktemp("policy"), appendonly=False) as server:
        yield server


@contextmanager
def evicting_redis(folder: Path, policy: str) -> Iterator[EmbeddedRedis]:
    """A redis-server started with ``maxmemory-policy`` set to ``policy``."""
    with running_redis(folder, appendonly=False, options=["--maxmemory-policy", policy]) as server:
        with redis.Redis.from_url(server.url) as client:
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": policy}
        yield server


@pytest.mark.wired
@pytest.mark.parametrize("evicting", EVICTING)
def test_serve_worker_and_dev_refuse_an_evicting_policy_naming_it(
    evicting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under any policy but noeviction, serve, worker and dev (on a configured Redis) exit 2
    with a message naming maxmemory-policy, the value found, noeviction and the loss."""
    with evicting_redis(tmp_path / "redis", evicting) as server:
        env = gateway_env(server.url, INCIDENTS_DATA_DIR=str(tmp_path / "data"))
        for command in ("serve", "worker", "dev"):
            assert main([command], environ=env) == 2, command
            err = capsys.readouterr().err
            assert "maxmemory-policy" in err and repr(evicting) in err, err
            assert "'noeviction'" in err and "lose accepted events" in err, err


@pytest.mark.slow
def test_a_real_worker_and_server_process_exit_2_on_an_evicting_redis(tmp_path: Path) -> None:
    """`incidents worker` and `incidents serve`, run as processes against allkeys-lru, exit
    with code 2 and say why on stderr."""
    with evicting_redis(tmp_path / "redis", "allkeys-lru") as server:
        env = gateway_env(server.url, INCIDENTS_PORT=str(free_port()))
        for command in (["worker"], ["serve"]):
            done = run(command, env)
            assert done.returncode == 2, (command, done.stderr)
            assert "maxmemory-policy is 'allkeys-lru'" in done.stderr, done.stderr


@pytest.mark.slow
def test_a_worker_starts_on_a_noeviction_redis_without_a_policy_warning(
    own_redis: EmbeddedRedis,
) -> None:
    """On noeviction a worker starts and works (a burst, exit 0) and says nothing about the
    policy; without INCIDENTS_SECRET_KEY it warns that signing secrets are stored unsealed."""
    done = run(["worker", "--burst"], gateway_env(own_redis.url))
    assert done.returncode == 0, done.stderr
    assert "maxmemory-policy" not in done.stderr, done.stderr
    assert "signing secrets (whsec_...) are stored in Redis unsealed" in done.stderr
    assert "set INCIDENTS_SECRET_KEY" in done.stderr


@pytest.mark.wired
def test_the_embedded_redis_never_evicts(own_redis: EmbeddedRedis) -> None:
    """The redis-server `incidents dev` starts runs with noeviction, so the check passes."""
    with redis.Redis.from_url(own_redis.url) as client:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert check_eviction_policy(client) is None


@pytest.mark.slow
def test_where_config_is_renamed_away_serve_and_worker_warn_and_start(tmp_path: Path) -> None:
    """A Redis with CONFIG disabled cannot be checked: serve and worker say so in a warning
    and start (the worker works a burst; the API answers /readyz)."""
    options = ["--rename-command", "CONFIG", ""]
    with running_redis(tmp_path / "redis", appendonly=False, options=options) as server:
        with redis.Redis.from_url(server.url) as client, pytest.raises(redis.ResponseError):
            client.config_get("maxmemory-policy")
        port = free_port()
        env = gateway_env(server.url, INCIDENTS_PORT=str(port))
        done = run(["worker", "--burst"], env)
        assert done.returncode == 0, done.stderr
        assert "warning: cannot check Redis's maxmemory-policy" in done.stderr, done.stderr
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            api = subprocess.Popen(
                [sys.executable, "-m", "incidents", "serve"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: _ready(port) or api.poll() is not None, 60, what="serve ready")
            assert api.poll() is None, log.read_text()
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(30)
        assert "warning: cannot check Redis's maxmemory-policy" in log.read_text()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
