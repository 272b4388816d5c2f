"""The retained event stream: routed events stay readable for tailing, trimmed only once
routed, to about INCIDENTS_STREAM_RETENTION entries."""

from __future__ import annotations

import time

import httpx
import redis

from incidents.delivery.lanes import DeliveryStore
from incidents.routing.fanout import Router, outbox_backlog
from incidents.store.events import EventStore, RecentEvent
from incidents.store.keys import OUTBOX, ROUTER_GROUP
from incidents.subscriptions.subscription import SubscriptionCache, SubscriptionStore
from tests.delivery_support import publish
from tests.support import event, with_async_redis


def _recent(redis_url: str, after: str | None, limit: int = 1000) -> list[RecentEvent]:
    return with_async_redis(
        redis_url, lambda connection: EventStore(connection).recent(after, limit)
    )


def _route(redis_url: str, retention: int = 0) -> int:
    return with_async_redis(
        redis_url,
        lambda connection: Router(
            connection,
            SubscriptionCache(),
            SubscriptionStore(connection),
            DeliveryStore(connection),
            clock=time.time,
            retention=retention,
        ).route(),
    )


def _backlog(redis_url: str) -> bool:
    return with_async_redis(redis_url, outbox_backlog)


def test_routed_events_stay_in_the_stream_and_can_be_tailed(
    client: httpx.Client, redis_url: str, redis_client: redis.Redis
) -> None:
    """Routing acknowledges entries without deleting them; a reader tails the stream from the
    last entry id it saw and gets only what was accepted since, in order."""
    first = publish(client, *(event() for _ in range(3)))
    assert _backlog(redis_url)
    assert _route(redis_url) == 3
    assert not _backlog(redis_url)
    assert redis_client.xpending(OUTBOX, ROUTER_GROUP)["pending"] == 0

    seen = _recent(redis_url, None)
    assert [r.stored.sequence for r in seen] == [a["sequence"] for a in first]
    assert [r.stored.event.id for r in seen] == [a["id"] for a in first]

    later = publish(client, *(event() for _ in range(2)))
    tail = _recent(redis_url, seen[-1].stream_id)
    assert [r.stored.sequence for r in tail] == [a["sequence"] for a in later]
    assert _recent(redis_url, tail[-1].stream_id) == []
    assert [r.stored.sequence for r in _recent(redis_url, None, limit=2)] == [
        a["sequence"] for a in first[:2]
    ]


def test_the_stream_is_trimmed_to_its_retention_only_once_routed(
    client: httpx.Client, redis_url: str, redis_client: redis.Redis
) -> None:
    """Unrouted entries are never trimmed; once routed, the stream keeps about the retention,
    the newest entries."""
    accepted = publish(client, *(event() for _ in range(250)))
    backlog = with_async_redis(redis_url, lambda c: outbox_backlog(c, retention=10))
    assert backlog  # a backlog: nothing trimmed
    assert redis_client.xlen(OUTBOX) == 250

    assert _route(redis_url, retention=10) == 250
    kept = redis_client.xlen(OUTBOX)
    assert 10 <= kept < 250
    tail = _recent(redis_url, None)
    assert [r.stored.sequence for r in tail] == [a["sequence"] for a in accepted][-kept:]
