"""A gateway whose data is on the test Redis Cluster: its settings, its keys, and a check that
every key it wrote is in a partition's slot or in the global one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis

from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded_cluster import EmbeddedCluster
from tests.support import admin_gateway

_TAG = re.compile(r"\{([^}]*)\}")


def on_cluster(settings: Settings, cluster: EmbeddedCluster, partitions: int = 6) -> Settings:
    """``settings`` with the data on ``cluster`` (in ``partitions`` partitions) and RQ on the
    test's plain Redis (RQ cannot run on a cluster)."""
    return settings.replace(
        redis_url=cluster.url, queue_redis_url=settings.redis_url, partitions=partitions
    )


@contextmanager
def cluster_gateway(settings: Settings, timeout: float = 20) -> Iterator[httpx.Client]:
    """An admin client of a gateway of its own on ``settings`` (data on a cluster), the
    global keys named for a cluster while it runs."""
    with keys.cluster_names(), admin_gateway(settings, timeout=timeout) as client:
        yield client


def cluster_keys(cluster: EmbeddedCluster) -> list[str]:
    """Every key on every primary of ``cluster``."""
    found: list[str] = []
    for node in cluster.primaries():
        with redis.Redis(port=node.port, decode_responses=True) as client:
            found.extend(client.scan_iter(count=1000))
    return found


def slot_tag(key: str) -> str | None:
    """What a cluster hashes ``key`` by: its first ``{...}`` when not empty, else None."""
    found = _TAG.search(key)
    return found.group(1) if found and found.group(1) else None


def stray_keys(cluster: EmbeddedCluster, partitions: int) -> list[str]:
    """The keys on ``cluster`` that are neither global (``{g}``) nor a partition's
    (``{p<n>}``, n below ``partitions``): keys a script or transaction could not reach
    together with the rest."""
    allowed = {"g"} | {f"p{n}" for n in range(partitions)}
    return sorted(k for k in cluster_keys(cluster) if slot_tag(k) not in allowed)
