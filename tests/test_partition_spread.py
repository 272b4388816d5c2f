"""Start-up on a Redis Cluster warns when its primaries do not share the partitions evenly
(a partition is on the primary of its tag's slot, and the busiest primary is the limit)."""

from __future__ import annotations

import pytest

from incidents.cli.partition_spread import spread, uneven
from incidents.cli.preflight import check_spread
from incidents.settings import Settings
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.keys import partitions
from incidents.store.redis import connect
from tests.cluster_support import on_cluster


def test_an_even_spread_says_nothing() -> None:
    """Primaries holding two partitions each, or one more than another, are even enough."""
    assert uneven({"a:1": [0, 3], "b:1": [1, 4], "c:1": [2, 5]}) is None
    assert uneven({"a:1": [0, 3], "b:1": [1], "c:1": [2]}) is None


def test_an_uneven_spread_names_each_primary_and_its_partitions() -> None:
    """One primary with four partitions and two with one each: a warning naming where each
    partition is, and how to move slots."""
    found = uneven({"a:1": [3], "b:1": [2], "c:1": [0, 1, 4, 5]})
    assert found is not None
    assert "a:1: 3; b:1: 2; c:1: 0, 1, 4, 5" in found
    assert "6 partitions" in found and "rebalance" in found and "equal ranges" in found
    assert "none" in str(uneven({"a:1": [0, 1, 2], "b:1": []}))


@pytest.mark.slow
def test_start_up_reads_the_spread_off_the_cluster(
    cluster: EmbeddedCluster, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the test cluster (redis-cli's equal slot ranges), six partitions land on the
    primaries that serve their slots, each on one only, two on each, and start-up is quiet."""
    layout = partitions(6, True)
    client = connect(cluster.url)
    try:
        found = spread(client, layout)
        for node, held in found.items():
            for p in held:
                assert client.get_node_from_key(layout.spaces[p].SEQUENCE).name == node  # type: ignore[attr-defined]  # RedisCluster's
    finally:
        client.close()
    assert sorted(p for held in found.values() for p in held) == list(range(6))
    assert set(found) == {f"127.0.0.1:{n.port}" for n in cluster.primaries()}
    assert sorted(len(held) for held in found.values()) == [2, 2, 2]
    check_spread(on_cluster(settings, cluster, 6))
    assert "evenly" not in capsys.readouterr().err
