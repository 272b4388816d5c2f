"""A throwaway Redis Cluster on loopback, for tests and benchmarks (the gateway never starts
one): primaries and their replicas, each an :class:`EmbeddedRedis` with a folder of its own
(append-only, ``noeviction``, ``cluster-enabled``), joined with ``redis-cli --cluster create``.

Everything here waits on conditions read from the nodes themselves, never for a guessed time:
a cluster is ready when every running node says ``cluster_state:ok``, every running replica's
link to its primary is up, and every running node names the same primaries for the slots.
:meth:`EmbeddedCluster.kill_primary` ends a primary with SIGKILL (what a crash looks like) and
waits until its replica has taken over; :meth:`EmbeddedCluster.restart` brings it back, as a
replica of the one that replaced it.

The binaries: Debian's ``/usr/bin/redis-server`` and ``/usr/bin/redis-cli`` (Redis 7) when
present, else a pair on ``PATH``; ``redis-cli --cluster`` needs Redis 5 or later.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from incidents.store.embedded import EmbeddedRedis, EmbeddedRedisError, free_port

DEBIAN_BIN = Path("/usr/bin")
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port plus this
MIN_MAJOR = 5  # the first redis-cli with --cluster create
# How long a node may be silent before the others count it as failed: long enough that a
# loaded 2-core machine never fails a live primary over, short enough for a failover test.
NODE_TIMEOUT_MS = 3000
READY_TIMEOUT = 90.0  # seconds to start, join, or fail over: generous for a loaded machine


class ClusterUnavailable(EmbeddedRedisError):
    """No redis-server and redis-cli pair here can run a cluster; the message says why."""


def _major(binary: str) -> int:
    found = subprocess.run(  # noqa: S603  # a binary we were pointed at, asked its version
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    version = re.search(r"(?:v=|redis-cli )(\d+)\.", found.stdout)
    return int(version[1]) if version else 0


def find_cluster_tools(environ: Mapping[str, str]) -> tuple[str, str]:
    """``(redis-server, redis-cli)`` able to make a cluster: Debian's first, else those on the
    ``PATH`` of ``environ``. Raises ClusterUnavailable naming what is missing."""
    pairs = [(str(DEBIAN_BIN / "redis-server"), str(DEBIAN_BIN / "redis-cli"))]
    path = environ.get("PATH")
    server, cli = shutil.which("redis-server", path=path), shutil.which("redis-cli", path=path)
    if server and cli:
        pairs.append((server, cli))
    tried = []
    for server, cli in pairs:
        if not (Path(server).is_file() and Path(cli).is_file()):
            tried.append(f"{server} and {cli}: not both there")
            continue
        major = min(_major(server), _major(cli))
        if major >= MIN_MAJOR:
            return server, cli
        tried.append(f"{server} and {cli}: Redis {major}, older than {MIN_MAJOR}")
    raise ClusterUnavailable(
        "no redis-server and redis-cli of Redis 5 or later to make a cluster with ("
        + "; ".join(tried)
        + "); install Debian's redis-server and redis-tools"
    )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(attempts: int = 200) -> int:
    """A free loopback port whose cluster bus port (``+10000``) is free too."""
    for _ in range(attempts):
        port = free_port()
        if port + BUS_OFFSET < 65536 and _bindable(port + BUS_OFFSET):
            return port
    raise EmbeddedRedisError(f"no free port with a free bus port in {attempts} tries")


def _start_on_a_free_port(node: EmbeddedRedis, attempts: int = 5) -> None:
    """Start a node that has never run; if another process took its port (or its bus port)
    since it was chosen, on another free one."""
    for attempt in range(attempts):
        try:
            node.start()
            return
        except EmbeddedRedisError as exc:
            if "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
            node.port = free_cluster_port()


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as another (or itself) sees it."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None  # of a replica
    slots: bool  # whether it serves any slot

    @classmethod
    def parse(cls, line: str) -> NodeView:
        parts = line.split()
        address = parts[1].split("@", 1)[0]
        return cls(
            id=parts[0],
            port=int(address.rsplit(":", 1)[1]),
            flags=frozenset(parts[2].split(",")),
            primary_id=None if parts[3] == "-" else parts[3],
            slots=len(parts) > 8,
        )

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    @property
    def serving(self) -> bool:
        """A primary that serves slots and that its peer does not count as failed."""
        return "master" in self.flags and self.slots and not self.failed


class EmbeddedCluster:
    """``primaries`` primaries with ``replicas`` replicas each, every node in a subfolder of
    ``folder``; ``options``: more redis-server flags for every node."""

    def __init__(
        self,
        folder: Path,
        environ: Mapping[str, str],
        primaries: int = 3,
        replicas: int = 1,
        options: Sequence[str] = (),
    ) -> None:
        self.server, self.cli = find_cluster_tools(environ)
        self.replicas = replicas
        flags = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            *options,
        ]  # fmt: skip
        self.nodes = [
            EmbeddedRedis(
                folder / f"node-{n}", environ, free_cluster_port(), True, flags, self.server
            )
            for n in range(primaries * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node (any one is enough to find the rest)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def running(self) -> list[EmbeddedRedis]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def start(self, timeout: float = READY_TIMEOUT) -> str:
        """Start every node, join them, wait until the cluster is ready; its URL."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                _start_on_a_free_port(node)
            create = [
                self.cli, "--cluster", "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            ]  # fmt: skip
            made = subprocess.run(  # noqa: S603  # our own binary and arguments
                create, capture_output=True, text=True, timeout=timeout, check=False
            )
            if made.returncode != 0:
                raise EmbeddedRedisError(
                    f"redis-cli --cluster create failed ({made.returncode}): "
                    f"{(made.stdout + made.stderr)[-2000:]}"
                )
            self.wait_until_ready(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL for one that does not go)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)  # all at once: they stop in parallel
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # What the nodes say.
    def _ask(self, node: EmbeddedRedis) -> tuple[dict[str, str], list[NodeView], dict[str, str]]:
        """A node's CLUSTER INFO, CLUSTER NODES and INFO replication."""
        with redis.Redis(port=node.port, socket_timeout=5, decode_responses=True) as client:
            info = _fields(client.execute_command("CLUSTER", "INFO"))
            raw = client.execute_command("CLUSTER", "NODES")
            replication = _fields(client.execute_command("INFO", "replication"))
        views = [NodeView.parse(line) for line in _text(raw).splitlines() if line.strip()]
        return info, views, replication

    def _primary_ports(self) -> set[int] | None:
        """The primaries serving slots, if every running node is ready and agrees on them."""
        agreed: set[int] | None = None
        for node in self.running():
            try:
                info, views, replication = self._ask(node)
            except redis.exceptions.RedisError:
                return None
            if info.get("cluster_state") != "ok":
                return None
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return None
            serving = {v.port for v in views if v.serving}
            if agreed is not None and serving != agreed:
                return None
            agreed = serving
        alive = {n.port for n in self.running()}
        return agreed if agreed and agreed <= alive else None

    def primaries(self) -> list[EmbeddedRedis]:
        """The running nodes that serve slots now, as the cluster agrees (empty: it does not)."""
        ports = self._primary_ports() or set()
        return [n for n in self.nodes if n.port in ports]

    def replicas_of(self, primary: EmbeddedRedis) -> list[EmbeddedRedis]:
        """The running nodes that replicate ``primary``."""
        _, views, _ = self._ask(primary)
        mine = next(v.id for v in views if "myself" in v.flags)
        ports = {v.port for v in views if v.primary_id == mine}
        return [n for n in self.running() if n.port in ports]

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> list[EmbeddedRedis]:
        """Until every running node says the cluster is ok, every running replica is linked
        to its primary and all agree on the primaries; those primaries."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.primaries()
            if found:
                return found
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"the cluster was not ready within {timeout:.0f} s: {self._describe()}"
                )
            time.sleep(0.1)

    def kill_primary(
        self, primary: EmbeddedRedis | None = None, timeout: float = READY_TIMEOUT
    ) -> tuple[EmbeddedRedis, EmbeddedRedis]:
        """SIGKILL ``primary`` (else the first), then wait until a replica of it serves its
        slots and the cluster is ready again: ``(the killed node, the one that took over)``."""
        primary = primary or self.wait_until_ready(timeout)[0]
        replicas = {n.port for n in self.replicas_of(primary)}
        if not replicas:
            raise EmbeddedRedisError(f"the primary on port {primary.port} has no replica")
        primary.kill()
        deadline = time.monotonic() + timeout
        while True:
            ports = self._primary_ports() or set()
            took_over = [n for n in self.nodes if n.port in ports & replicas]
            if took_over:
                return primary, took_over[0]
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"no replica took over from port {primary.port} within {timeout:.0f} s:"
                    f" {self._describe()}"
                )
            time.sleep(0.1)

    def restart(self, node: EmbeddedRedis, timeout: float = READY_TIMEOUT) -> None:
        """Start a stopped node again with its data; wait until the cluster is ready with it
        (a killed primary comes back as a replica of the one that took over)."""
        node.start()
        self.wait_until_ready(timeout)

    def heal(self, timeout: float = READY_TIMEOUT) -> None:
        """Start every node that is not running (with its data); wait until ready."""
        for node in self.nodes:
            if node not in self.running():
                node.start()
        self.wait_until_ready(timeout)

    def flush(self) -> None:
        """Remove every key from every primary."""
        for node in self.primaries():
            with redis.Redis(port=node.port, socket_timeout=10) as client:
                client.flushall()

    def _describe(self) -> str:
        lines = []
        for node in self.nodes:
            if node not in self.running():
                lines.append(f"{node.port}: not running")
                continue
            try:
                info, _, replication = self._ask(node)
            except redis.exceptions.RedisError as exc:
                lines.append(f"{node.port}: {exc}")
                continue
            lines.append(
                f"{node.port}: {info.get('cluster_state')} {replication.get('role')}"
                f" link {replication.get('master_link_status', '-')}"
            )
        return "; ".join(lines)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: object) -> dict[str, str]:
    """``key:value`` lines (CLUSTER INFO, or INFO as text) as a dict."""
    if isinstance(raw, dict):  # redis-py parses INFO itself
        return {str(k): _text(v) for k, v in raw.items()}
    found = {}
    for line in _text(raw).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            found[key] = value
    return found
