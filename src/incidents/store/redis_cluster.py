"""Redis Cluster URLs and clients.

``INCIDENTS_REDIS_URL=redis+cluster://[[user]:password@]host:port[,host:port...][/0][?option=...]``
names a Redis Cluster by some of its nodes (the client finds the rest and follows the slots as
they move); ``rediss+cluster://`` is the same over TLS. The credentials are written as in a
``redis://`` URL and read by redis-py's own URL parser, as are the few options after ``?``
that a cluster client takes (:data:`OPTIONS`: a TLS CA, a client certificate, a client name).
A cluster has only database 0.

The clients built here are redis-py's ``RedisCluster`` (blocking) and
``redis.asyncio.cluster.RedisCluster``, with the same timeouts and retries as the single-Redis
clients of ``store/redis.py``. Which commands they can run together is a question of the key
layout: a Lua script or a ``MULTI`` must keep to one slot. Two things differ from redis-py's
own, so that code written for one Redis runs unchanged on keys of one slot:

- their pipelines take the commands of several keys (``MGET``, ``SUNION``, ...) that
  redis-py's cluster pipelines refuse outright; Redis refuses them only when the keys are on
  different slots (``CROSSSLOT``);
- a registered script queued in a pipeline goes as its text (``EVAL``), not its SHA: a
  cluster's pipeline cannot load a script before it runs, and a replica that took over from a
  primary does not hold the scripts that primary had loaded. Redis keeps the compiled script
  either way. Called on the client itself, a script runs by its SHA and is loaded on a
  ``NOSCRIPT``, as on one Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import redis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.commands.core import AsyncCoreCommands, AsyncScript, CoreCommands, Script
from redis.connection import parse_url
from redis.retry import Retry

# The cluster scheme and the plain one whose credentials and options syntax it shares.
SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}
# Options a cluster URL may carry after ``?``: both cluster clients take them.
OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
    | {"client_name"}
)


def is_cluster_url(url: str) -> bool:
    return url.lower().startswith(tuple(SCHEMES))


def is_cluster_client(client: object) -> bool:
    """Whether ``client`` is a cluster client (blocking or asyncio), which ``connect`` and
    ``connect_async`` type as the single-Redis client they stand for."""
    return isinstance(client, redis.RedisCluster | aiocluster.RedisCluster)


def is_cluster_pipeline(pipe: object) -> bool:
    """Whether ``pipe`` is a cluster client's pipeline (blocking or asyncio)."""
    return isinstance(pipe, redis.cluster.ClusterPipeline | aiocluster.ClusterPipeline)


@dataclass(frozen=True)
class ClusterTarget:
    """A ``redis+cluster://`` URL, parsed: the nodes to start from, TLS or not, and the
    credentials and options every node's connection gets."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, url: str) -> ClusterTarget:
        """Raises ValueError with a message that quotes the bad part (never the password)."""
        scheme = next((s for s in SCHEMES if url.lower().startswith(s)), None)
        if scheme is None:
            raise ValueError(f"a cluster URL starts with {' or '.join(SCHEMES)}")
        rest = url[len(scheme) :]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        location, tail = rest[:cut], rest[cut:]
        auth, at, hosts = location.rpartition("@")
        path, _, query = tail.partition("?")
        if path.strip("/") not in ("", "0"):
            raise ValueError(
                f"database {path.strip('/')!r}: a Redis Cluster has only database 0"
                f" ({scheme}host:port[,host:port...][/0])"
            )
        unknown = sorted(set(parse_qs(query)) - OPTIONS)
        if unknown:
            takes = ", ".join(sorted(OPTIONS))
            raise ValueError(f"option {unknown[0]!r} is not one a cluster URL takes ({takes})")
        nodes = tuple(_node(part, scheme) for part in hosts.split(","))
        host, port = nodes[0]
        plain = f"{SCHEMES[scheme]}{auth}{at}{_bracketed(host)}:{port}" + (
            f"?{query}" if query else ""
        )
        options = {
            k: v
            for k, v in parse_url(plain).items()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            if k not in ("host", "port", "db", "connection_class")
        }
        return cls(nodes, scheme.startswith("rediss"), options)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _node(part: str, scheme: str) -> tuple[str, int]:
    host, sep, port = part.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{part.strip()!r} is not host:port ({scheme}host:port[,host:port...])"
            if part.strip()
            else f"it names no node ({scheme}host:port[,host:port...])"
        )
    return host.strip("[]"), int(port)


# Commands of several keys that redis-py's cluster pipelines refuse; on keys of one slot Redis
# runs them as on one Redis.
SAME_SLOT_COMMANDS = (
    "mget", "mset", "msetnx", "rename", "renamenx", "rpoplpush", "smove", "sort",
    "sdiff", "sdiffstore", "sinter", "sinterstore", "sunion", "sunionstore",
    "pfcount", "pfmerge", "bitop",
)  # fmt: skip


class _Pipeline(redis.cluster.ClusterPipeline):
    """A blocking cluster pipeline that takes :data:`SAME_SLOT_COMMANDS`."""

    __slots__ = ()


class _AsyncPipeline(aiocluster.ClusterPipeline):
    """An asyncio cluster pipeline that takes :data:`SAME_SLOT_COMMANDS`."""

    __slots__ = ()


for _name in SAME_SLOT_COMMANDS:
    setattr(_Pipeline, _name, getattr(CoreCommands, _name))
    setattr(_AsyncPipeline, _name, getattr(AsyncCoreCommands, _name))


def _script_args(keys: Any, args: Any) -> list[Any]:
    keys, args = list(keys or []), list(args or [])
    return [len(keys), *keys, *args]


class _Script(Script):
    """A script that goes as its text when queued in a cluster pipeline."""

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, redis.cluster.ClusterPipeline):
            queue: Any = client.execute_command  # redis-py leaves it unannotated
            return queue("EVAL", self.script, *_script_args(keys, args))
        return super().__call__(keys or [], args or [], client)


class _AsyncScript(AsyncScript):
    """As :class:`_Script`, for the asyncio client."""

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, aiocluster.ClusterPipeline):
            return client.execute_command("EVAL", self.script, *_script_args(keys, args))
        return await super().__call__(keys, args, client)


class _Cluster(redis.RedisCluster):
    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe: Any = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        pipe.__class__ = _Pipeline  # the same object, with the commands above
        return pipe

    def register_script(self, script: Any) -> Any:
        return _Script(self, script)


class _AsyncCluster(aiocluster.RedisCluster):
    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe: Any = super().pipeline(transaction, shard_hint)
        pipe.__class__ = _AsyncPipeline  # the same object, with the commands above
        return pipe

    def register_script(self, script: Any) -> Any:
        return _AsyncScript(self, script)


def connect_cluster(target: ClusterTarget) -> redis.RedisCluster:
    """The blocking cluster client (workers, commands)."""
    return _Cluster(
        startup_nodes=[
            ClusterNode(host, port)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            for host, port in target.nodes
        ],
        ssl=target.tls,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        **target.options,
    )


CLUSTER_CONNECTIONS = 1024  # per node, per asyncio cluster client (see connect_cluster_async)


def connect_cluster_async(
    target: ClusterTarget, *, max_connections: int | None = None
) -> aiocluster.RedisCluster:
    """The asyncio cluster client (the API, delivery). ``max_connections`` asks, as for one
    Redis, that commands share a few connections; but where one Redis's pool waits for a free
    connection, the cluster client's fails the command at once (``MaxConnectionsError``), so
    every cluster client may open up to CLUSTER_CONNECTIONS per node: more than a process runs
    at once (a deliver job's lanes, each with one command or pipeline in flight per node, or
    the API's requests)."""
    return _AsyncCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in target.nodes],
        ssl=target.tls,
        socket_connect_timeout=2,
        socket_timeout=5 if max_connections is None else 10,
        retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        max_connections=CLUSTER_CONNECTIONS,
        health_check_interval=10,
        **target.options,
    )
