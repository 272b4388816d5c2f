"""What ``serve``, ``worker`` and ``dev`` check in Redis before they start.

- Redis must never evict keys (``store/redis_memory.py``): any ``maxmemory-policy`` but
  ``noeviction`` stops the command (exit 2); a Redis that will not say (``CONFIG`` disabled
  or renamed) gets a warning. On a Redis Cluster, every primary is asked.
- On a Redis Cluster, how evenly its primaries share the partitions (a warning when not:
  ``cli/partition_spread.py``).
- Subscriptions' signing secrets (``subscriptions/signing_secrets.py``): with
  ``INCIDENTS_SECRET_KEY`` set, those stored plain are sealed in place; without it, a warning
  that they are stored unsealed.

Redis out of reach (or full) at start-up is no verdict: a warning, and the command starts
(``serve`` answers 503 and ``worker`` waits until Redis is back, as they always do).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import redis

from incidents.settings import Settings, SettingsError
from incidents.store import keys
from incidents.store.redis import FULL, UNAVAILABLE, connect
from incidents.store.redis_cluster import ClusterTarget, connect_cluster, is_cluster_url
from incidents.store.redis_memory import (
    POLICY_SETTING,
    EvictionPolicyRefused,
    check_eviction_policy,
)

UNSEALED = (
    "INCIDENTS_SECRET_KEY is not set: subscriptions' signing secrets (whsec_...) are stored in"
    " Redis unsealed, so anyone who can read Redis or a copy of its files can sign deliveries"
    " that subscribers will trust; set INCIDENTS_SECRET_KEY (base64 of 32 bytes,"
    " `openssl rand -base64 32`) for the API and the workers"
)


def warn(text: str) -> None:
    print(f"incidents: warning: {text}", file=sys.stderr, flush=True)


@contextmanager
def primaries(url: str) -> Iterator[list[tuple[str | None, redis.Redis]]]:
    """Each Redis that takes writes: the one Redis (or Sentinel's primary), named None, or
    every primary of a cluster, named ``the primary host:port`` (a client of its own each)."""
    if not is_cluster_url(url):
        connection = connect(url)
        try:
            yield [(None, connection)]
        finally:
            connection.close()
        return
    cluster = connect_cluster(ClusterTarget.parse(url))
    try:
        nodes = cluster.get_primaries()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        yield [(f"the primary {node.name}", cluster.get_redis_connection(node)) for node in nodes]
    finally:
        cluster.close()


def check_redis(settings: Settings) -> None:
    """Refuse (EvictionPolicyRefused) a Redis, or any primary of a cluster, that may evict
    keys; warn where it cannot be told."""
    assert settings.redis_url is not None
    warnings = []
    try:
        with primaries(settings.redis_url) as found:
            for name, connection in found:
                try:
                    warning = check_eviction_policy(connection)
                except EvictionPolicyRefused as exc:
                    if name is None:
                        raise
                    raise EvictionPolicyRefused(f"Redis Cluster, {name}: {exc}") from None
                except UNAVAILABLE as exc:
                    warning = (
                        f"Redis cannot be reached ({exc}); its {POLICY_SETTING} was not checked"
                    )
                if warning is not None:
                    warnings.append(
                        warning if name is None else f"Redis Cluster, {name}: {warning}"
                    )
    except UNAVAILABLE as exc:  # no node of the cluster answers
        warnings.append(f"Redis cannot be reached ({exc}); its {POLICY_SETTING} was not checked")
    for warning in warnings:
        warn(warning)


def seal_signing_secrets(settings: Settings) -> None:
    """Seal the signing secrets stored plain when a key is set; warn when none is."""
    from incidents.store.secret_box import secret_box
    from incidents.subscriptions.signing_secrets import seal_stored

    box = secret_box(settings.secret_key)
    if box is None:
        warn(UNSEALED)
        return
    assert settings.redis_url is not None
    connection: redis.Redis | None = None
    try:
        connection = connect(settings.redis_url)  # a cluster's client reads the slots at once
        count = seal_stored(connection, box)
    except UNAVAILABLE as exc:
        warn(f"Redis cannot be reached ({exc}); stored signing secrets were not sealed now")
        return
    except FULL:  # the command starts and waits for room, as it does for a Redis out of reach
        warn(
            "Redis is full (it reached maxmemory and refuses writes); stored signing secrets"
            " were not sealed now: they are sealed at the next start with room, and keep"
            " signing until then"
        )
        return
    finally:
        if connection is not None:
            connection.close()
    if count:
        print(
            f"incidents: sealed the signing secrets of {count} subscription(s) stored before"
            " INCIDENTS_SECRET_KEY was set",
            file=sys.stderr,
            flush=True,
        )


class PartitionsRefused(SettingsError):
    """INCIDENTS_PARTITIONS differs from the number the deployment's data was created with."""


def check_partitions(settings: Settings) -> None:
    """Record ``INCIDENTS_PARTITIONS`` in a deployment's Redis on its first start; refuse
    (PartitionsRefused) another number later: each event, incident and alert lives in the
    partition its id says, so another number would look for them in the wrong place. Data
    written before the number was recorded (a one-partition sequence exists) counts as 1."""
    assert settings.redis_url is not None
    cluster = is_cluster_url(settings.redis_url)
    try:
        with keys.cluster_names(cluster):
            recorded = _recorded_partitions(settings, cluster)
    except (*UNAVAILABLE, *FULL) as exc:
        warn(f"Redis cannot be reached or is full ({exc}); INCIDENTS_PARTITIONS was not checked")
        return
    if recorded is not None and int(recorded) != settings.partitions:
        raise PartitionsRefused(
            f"INCIDENTS_PARTITIONS={settings.partitions}, but this Redis holds data of"
            f" {int(recorded)} partition(s): the number is set once, when a deployment is"
            f" created (each incident lives in the partition its id says). Start with"
            f" INCIDENTS_PARTITIONS={int(recorded)}, or move the data to a new deployment with"
            " `incidents export` and `incidents import`"
        )


def _recorded_partitions(settings: Settings, cluster: bool) -> bytes | None:
    """The partition count recorded in the deployment's Redis, recorded now if none was."""
    assert settings.redis_url is not None
    connection = connect(settings.redis_url)
    try:
        recorded = connection.get(keys.PARTITIONS)
        if recorded is None:
            earlier = not cluster and connection.exists(keys.SINGLE.SEQUENCE)
            wanted = 1 if earlier else settings.partitions
            connection.set(keys.PARTITIONS, wanted, nx=True)
            recorded = connection.get(keys.PARTITIONS)
    finally:
        connection.close()
    return cast(bytes | None, recorded)


def preflight(settings: Settings) -> None:
    """Everything ``serve`` and ``worker`` check before they start (the global keys named
    for the deployment's Redis while they do)."""
    assert settings.redis_url is not None
    with keys.cluster_names(is_cluster_url(settings.redis_url)):
        check_redis(settings)
        check_partitions(settings)
        check_spread(settings)
        seal_signing_secrets(settings)


def check_spread(settings: Settings) -> None:
    """On a Redis Cluster, warn when its primaries hold uneven numbers of the partitions
    (``cli/partition_spread.py``); nothing on one Redis or when the cluster cannot be asked."""
    from incidents.cli.partition_spread import spread, uneven

    assert settings.redis_url is not None
    if not is_cluster_url(settings.redis_url):
        return
    try:
        cluster = connect_cluster(ClusterTarget.parse(settings.redis_url))
        try:
            warning = uneven(spread(cluster, settings.layout))
        finally:
            cluster.close()
    except UNAVAILABLE:
        return  # said already, by the checks before
    if warning is not None:
        warn(warning)
