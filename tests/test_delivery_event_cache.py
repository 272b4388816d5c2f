"""A delivery job keeps every event of a lane it is working, however the shared cache of
events it read for all its lanes is emptied meanwhile."""

from __future__ import annotations

import asyncio

import httpx
import redis

from incidents.delivery.address_guard import outbound_client
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.events import EventStore
from incidents.worker.jobs import WorkerContext, _lane_redis
from tests.delivery_support import Receiver, publish, subscribe
from tests.support import event

# Events a dispatcher already holds for other lanes: one short of the 10,000 it keeps, so the
# lane's own two events take the cache past that and the next claim empties it (a
# long-running job reaches this after some ten thousand events).
CACHED = 9_999


def test_a_lane_in_flight_keeps_its_events_when_the_shared_cache_is_emptied(
    settings: Settings, client: httpx.Client, rx: Receiver, redis_client: redis.Redis
) -> None:
    """A job that has read many events works a lane of two events to a slow sink; the cache
    is emptied while the first is sent, and the second still goes out (it was dead-lettered
    as "the event is no longer stored")."""
    subscribe(client, rx, "/slow")
    rx.delays["/slow"] = 0.3
    first = event("im.incident.declare", imincidentid="INC-cache")
    second = event("im.incident.note", imincidentid="INC-cache")
    publish(client, first, second)

    async def work() -> int:
        assert settings.redis_url is not None
        context = WorkerContext.build(settings)
        connection = _lane_redis(settings.redis_url)
        http = outbound_client(True, settings.delivery_timeout, 8, allow_insecure=True)
        try:
            dispatcher = context.dispatcher(connection, http)
            # The job has already read many events for other lanes.
            store = EventStore(connection)
            [seen] = await store.get_many([await store.last_sequence()])
            dispatcher._events.update({-n: seen for n in range(CACHED)})
            return await dispatcher.run(10.0, concurrency=8, per_lane=20)
        finally:
            await http.close()
            await connection.aclose(close_connection_pool=True)

    asyncio.run(work())
    assert [r.event["id"] for r in rx.at("/slow")] == [first["id"], second["id"]]
    assert redis_client.zcard(keys.DEAD_LETTERS) == 0
