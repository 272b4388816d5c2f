"""The throwaway Redis Cluster the tests and benchmarks run against: three primaries with a
replica each, every node persistent and never evicting, a primary's crash taken over by its
replica, and nothing left running once it is stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from incidents.store.embedded_cluster import ClusterUnavailable, EmbeddedCluster
from tests.support import wait_for


def _config(port: int, name: str) -> str:
    with redis.Redis(port=port, decode_responses=True) as client:
        return str(client.config_get(name)[name])


@pytest.mark.slow
def test_three_primaries_each_with_a_linked_replica(cluster: EmbeddedCluster) -> None:
    """The cluster has three primaries serving slots, each with one replica linked to it."""
    primaries = cluster.primaries()
    assert len(primaries) == 3
    for primary in primaries:
        replicas = cluster.replicas_of(primary)
        assert len(replicas) == 1
        with redis.Redis(port=replicas[0].port, decode_responses=True) as client:
            assert client.info("replication")["master_link_status"] == "up"


@pytest.mark.slow
def test_every_node_persists_and_never_evicts(cluster: EmbeddedCluster) -> None:
    """Every node appends to its own AOF in its own folder and refuses rather than evicts."""
    folders = set()
    for node in cluster.nodes:
        assert _config(node.port, "appendonly") == "yes"
        assert _config(node.port, "maxmemory-policy") == "noeviction"
        assert _config(node.port, "cluster-enabled") == "yes"
        folders.add(_config(node.port, "dir"))
    assert len(folders) == len(cluster.nodes)


@pytest.mark.slow
def test_a_killed_primary_is_replaced_by_its_replica_with_its_writes(
    cluster: EmbeddedCluster,
) -> None:
    """SIGKILL a primary: its replica serves its slots, holding what the primary had
    replicated; started again, the old primary rejoins as a replica."""
    primary = cluster.primaries()[0]
    with redis.Redis(port=primary.port) as client:
        slot_key = _key_served_by(client)
        client.set(slot_key, b"kept")
        assert client.wait(1, 5000) == 1
    killed, took_over = cluster.kill_primary(primary)
    assert killed is primary and killed.process is None
    assert took_over in cluster.primaries() and primary not in cluster.primaries()
    with redis.Redis(port=took_over.port) as client:
        assert client.get(slot_key) == b"kept"
    cluster.restart(killed)
    assert killed not in cluster.primaries()
    assert cluster.replicas_of(took_over) == [killed]


def _key_served_by(client: redis.Redis) -> str:
    """A key whose slot the node ``client`` talks to serves (another's answers MOVED)."""
    for n in range(100_000):
        try:
            client.get(f"k{n}")
        except redis.exceptions.ResponseError:
            continue
        return f"k{n}"
    raise AssertionError("no key of this node's slots")


@pytest.mark.slow
def test_stopping_leaves_no_process(tmp_path: Path) -> None:
    """Once stopped, none of the cluster's redis-server processes is left running."""
    try:
        own = EmbeddedCluster(tmp_path, os.environ, primaries=3, replicas=0)
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))
    with own:
        processes = [node.process for node in own.nodes]
        assert all(p is not None and p.poll() is None for p in processes)
    assert all(node.process is None for node in own.nodes)
    wait_for(
        lambda: all(p is not None and p.poll() is not None for p in processes),
        30,
        what="every redis-server gone",
    )


@pytest.mark.slow
def test_a_lanes_client_takes_more_concurrent_commands_than_its_pool_size(
    cluster: EmbeddedCluster,
) -> None:
    """The deliver job's client (max_connections=32) on a cluster runs 300 pipelines at once
    on one node: none fails for want of a connection (one Redis's pool would wait)."""
    import asyncio

    from incidents.store.redis import connect_async

    async def run() -> list[object]:
        client = connect_async(cluster.url, max_connections=32)
        try:

            async def one(n: int) -> object:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.incr("{lanes-test}:n")
                    pipe.set("{lanes-test}:body", b"x" * 100_000)  # a while on the wire
                    return (await pipe.execute())[0]

            return await asyncio.gather(*(one(n) for n in range(300)))
        finally:
            await client.aclose()

    assert sorted(asyncio.run(run())) == list(range(1, 301))  # type: ignore[type-var]
