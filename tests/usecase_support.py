"""What the in-process tests of the use cases share: callers of each role, a fixed clock,
the read layer over a Redis, and a Redis that answers nothing (for refusals that must come
before anything is read)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.queries.query_set import Queries
from incidents.store.events import EventStore

NOW = datetime(2026, 5, 3, 3, 0, tzinfo=UTC)
REGISTRY = SchemaRegistry.load(Path(__file__).resolve().parent.parent / "schemas")
ADMIN = Principal("admin", "admin", frozenset({"admin"}))
PRODUCER = Principal("p1", "producer", frozenset({"producer"}), publish=("im.*",))
SUBSCRIBER = Principal("s1", "subscriber", frozenset({"subscriber"}))


def now() -> datetime:
    return NOW


def queries(redis: aioredis.Redis) -> Queries:
    return Queries.build(redis, EventStore(redis), REGISTRY)


def silent_redis() -> aioredis.Redis:
    """A client of a port nothing listens on: any command fails, so an answer that came
    without an error read nothing."""
    return aioredis.Redis(host="127.0.0.1", port=1)
