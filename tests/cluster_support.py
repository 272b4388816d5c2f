"""A gateway whose data is on the test Redis Cluster: its settings, its keys, a check that
every key it wrote is in a partition's slot or in the global one, and its ``serve`` and
``worker`` processes."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded_cluster import EmbeddedCluster
from tests.process_support import free_port, process_env, spawn, stop_processes
from tests.support import admin_client, admin_gateway, wait_for

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
    allowed = {"g"} | {keys.partition_tag(n, partitions) for n in range(partitions)}
    return sorted(k for k in cluster_keys(cluster) if slot_tag(k) not in allowed)


# What every process of a gateway on the test cluster runs with, beside the test's settings:
# six partitions over the three primaries, and an event answered 202 only once a replica
# holds it (a primary's crash then loses none).
CLUSTER_ENV = {
    "INCIDENTS_PARTITIONS": "6",
    "INCIDENTS_MIN_REPLICAS": "1",
    "INCIDENTS_REPLICA_TIMEOUT_MS": "2000",
}


@dataclass
class ClusterGateway:
    """``incidents serve`` and ``incidents worker`` processes on the test cluster, each
    logging to ``<logs>/<name>.log``; started and stopped by name."""

    settings: Settings
    logs: Path
    extra: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)

    def _spawn(self, name: str, command: str, port: int) -> subprocess.Popen[bytes]:
        env = process_env(self.settings, port, {**CLUSTER_ENV, **self.extra})
        found = spawn(command, env, self.logs / f"{name}.log")
        self.processes[name] = found
        return found

    def serve(self, name: str = "serve") -> str:
        """Start an API process; its URL, once it answers /readyz."""
        port = free_port()
        self._spawn(name, "serve", port)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert self.processes[name].poll() is None, f"{name} exited: {self.log(name)}"
            try:
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 90, what=f"{name} answering /readyz")
        self.urls.append(url)
        return url

    def worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self._spawn(name, "worker", free_port())

    def kill(self, name: str) -> None:
        """SIGKILL a process (what a crash looks like)."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.processes.items()}

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def admin(self, url: str | None = None) -> httpx.Client:
        """An admin client of the first API process (or of ``url``)."""
        return admin_client(url or self.urls[0], timeout=20)

    def stop(self) -> None:
        """SIGTERM every process still running (SIGKILL for one that does not stop)."""
        stop_processes(self.processes.values())


@contextmanager
def cluster_processes(
    settings: Settings, logs: Path, extra: Mapping[str, str] | None = None
) -> Iterator[ClusterGateway]:
    """A :class:`ClusterGateway` on ``settings`` (data on the cluster, RQ on a plain Redis),
    every process it started stopped when the block ends."""
    logs.mkdir(parents=True, exist_ok=True)
    found = ClusterGateway(settings, logs, dict(extra or {}))
    try:
        yield found
    finally:
        found.stop()
