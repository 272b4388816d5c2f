"""INCIDENTS_REDIS_URL in its redis+cluster:// form: read once, a bad one refused by name,
clients built from it that reach every primary, and the start-up check asking each primary."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from incidents.cli.main import main
from incidents.cli.preflight import check_redis, preflight
from incidents.errors import StoreUnavailable
from incidents.settings import Settings, SettingsError
from incidents.store.embedded import free_port
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.redis import connect, connect_async, guarded
from incidents.store.redis_cluster import ClusterTarget
from incidents.store.redis_memory import EvictionPolicyRefused
from incidents.store.secret_box import new_key


def test_a_cluster_url_names_its_nodes_credentials_and_tls() -> None:
    """Every node (IPv6 in brackets), the user and (unquoted) password, TLS and its options
    are read, with the credentials syntax of a redis:// URL."""
    url = "rediss+cluster://ops:p%40ss@10.0.0.1:7000,[::1]:7001/0?ssl_ca_certs=/etc/ca.pem"
    queue = {"INCIDENTS_QUEUE_REDIS_URL": "redis://queue:6379/0"}
    assert Settings.from_env({"INCIDENTS_REDIS_URL": url, **queue}).redis_url == url
    target = ClusterTarget.parse(url)
    assert target.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert target.tls
    assert dict(target.options) == {
        "username": "ops",
        "password": "p@ss",
        "ssl_ca_certs": "/etc/ca.pem",
    }


def test_a_plain_cluster_url_has_no_tls_and_a_password_alone() -> None:
    """``redis+cluster://:password@host:port`` is a password without a user, over plain TCP."""
    target = ClusterTarget.parse("redis+cluster://:secret@node-a:6379")
    assert target == ClusterTarget((("node-a", 6379),), False, {"password": "secret"})


@pytest.mark.parametrize(
    ("url", "quoted"),
    [
        ("redis+cluster://", "names no node"),
        ("redis+cluster://n1:7000,n2", "'n2'"),
        ("redis+cluster://:hunter2@n1:99999", "'n1:99999'"),
        ("redis+cluster://n1:7000/2", "only database 0"),
        ("redis+cluster://n1:7000?db=3", "'db'"),
    ],
)
def test_a_bad_cluster_url_stops_start_up_quoting_the_bad_part(url: str, quoted: str) -> None:
    """A malformed redis+cluster:// URL is a SettingsError that names the setting and quotes
    the bad part, never the password."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"INCIDENTS_REDIS_URL": url, "INCIDENTS_QUEUE_REDIS_URL": "redis://q"})
    assert quoted in str(raised.value)
    assert "INCIDENTS_REDIS_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def _keys_on_every_primary(cluster: EmbeddedCluster, client: redis.Redis) -> list[str]:
    """Keys that between them land on every primary of ``cluster``."""
    wanted = {f"127.0.0.1:{node.port}" for node in cluster.primaries()}
    found: dict[str, str] = {}
    for n in range(10_000):
        node = client.get_node_from_key(f"key-{n}")  # type: ignore[attr-defined]  # RedisCluster's
        found.setdefault(node.name, f"key-{n}")
        if set(found) >= wanted:
            return list(found.values())
    raise AssertionError(f"no keys found on {wanted - set(found)}")


@pytest.mark.slow
def test_the_clients_built_from_a_cluster_url_reach_every_primary(
    cluster: EmbeddedCluster,
) -> None:
    """The blocking and asyncio clients of a redis+cluster:// URL write and read keys on each
    of the three primaries."""
    client = connect(cluster.url)
    try:
        keys = _keys_on_every_primary(cluster, client)
        assert len(keys) == 3
        for key in keys:
            client.set(key, key.encode())
    finally:
        client.close()

    async def read() -> list[bytes | str | None]:
        reader = connect_async(cluster.url)
        try:
            return [await reader.get(key) for key in keys]
        finally:
            await reader.aclose()

    assert asyncio.run(read()) == [key.encode() for key in keys]


@contextmanager
def evicting(port: int) -> Iterator[None]:
    """One node's maxmemory-policy set to allkeys-lru until the block ends."""
    with redis.Redis(port=port) as node:
        node.config_set("maxmemory-policy", "allkeys-lru")
        try:
            yield
        finally:
            node.config_set("maxmemory-policy", "noeviction")


@pytest.mark.slow
def test_start_up_refuses_a_cluster_with_one_evicting_primary(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """The eviction check asks every primary of a cluster: all noeviction passes; one primary
    on allkeys-lru stops start-up, naming that primary."""
    on_cluster = settings.replace(redis_url=cluster.url, queue_redis_url=settings.redis_url)
    check_redis(on_cluster)
    last = cluster.primaries()[-1]
    with evicting(last.port), pytest.raises(EvictionPolicyRefused) as refused:
        check_redis(on_cluster)
    assert f"127.0.0.1:{last.port}" in str(refused.value)
    assert "allkeys-lru" in str(refused.value)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
        redis.exceptions.RedisClusterUnreachableError("no node reachable"),
        redis.exceptions.SlotNotCoveredError("slot 12 not covered"),
    ],
)
def test_a_cluster_failing_over_is_a_503_with_retry_after(error: Exception) -> None:
    """A slot without a primary while a replica takes over, or no node reachable, is Redis
    being unavailable (503 with Retry-After), not a 500."""

    async def fail() -> None:
        async with guarded("storing an event"):
            raise error

    with pytest.raises(StoreUnavailable) as raised:
        asyncio.run(fail())
    assert raised.value.status == 503 and raised.value.headers["Retry-After"] == "2"


@pytest.mark.wired
def test_start_up_checks_warn_about_a_cluster_out_of_reach(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No node of the cluster answering at start-up is a warning, not a crash."""
    preflight(
        Settings(
            redis_url=f"redis+cluster://127.0.0.1:{free_port()}",
            queue_redis_url="redis://127.0.0.1:1/0",
            secret_key=new_key(),
        )
    )
    err = capsys.readouterr().err
    assert "maxmemory-policy was not checked" in err
    assert "stored signing secrets were not sealed now" in err


@pytest.mark.wired
@pytest.mark.parametrize("command", ["export", "import"])
def test_export_and_import_take_a_cluster_and_say_when_it_is_out_of_reach(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export` and `import` take a Redis Cluster as INCIDENTS_REDIS_URL (a cluster is no
    longer refused): with no node of it answering they exit 1 saying Redis cannot be reached,
    never with a traceback."""
    env = {
        "INCIDENTS_REDIS_URL": f"redis+cluster://127.0.0.1:{free_port()}",
        "INCIDENTS_QUEUE_REDIS_URL": "redis://127.0.0.1:1/0",
        "INCIDENTS_DATA_DIR": str(tmp_path),
    }
    (tmp_path / "one.jsonl").write_text("")
    argv = [command] + ([str(tmp_path / "one.jsonl")] if command == "import" else [])
    assert main(argv, environ=env) == 1
    err = capsys.readouterr().err
    assert "Redis" in err and "Traceback" not in err and "one slot" not in err
