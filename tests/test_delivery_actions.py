"""The delivery use cases, called in-process as every door calls them: the time a replay
starts from, who may replay and redrive, and what may not be redriven."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import Forbidden, InvalidRequest, NotFound
from incidents.silences.store import SilenceStore
from incidents.usecases.delivery_actions import DeliveryActions, replay_since
from tests.support import with_async_redis
from tests.usecase_support import ADMIN, PRODUCER, REGISTRY, SUBSCRIBER, now, queries, silent_redis


def actions(redis: aioredis.Redis) -> DeliveryActions:
    return DeliveryActions(
        redis, DeliveryQueries(redis), queries(redis), REGISTRY, SilenceStore(redis), now
    )


def test_a_replay_starts_from_an_rfc_3339_time_with_a_zone() -> None:
    """A time with a zone (Z or an offset) is the start; the same instant either way."""
    assert replay_since("2024-05-01T00:00:00Z") == datetime(2024, 5, 1, tzinfo=UTC)
    assert replay_since("2024-05-01T02:00:00+02:00") == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["", "yesterday", "2024-05-01T00:00:00", 1714521600, None])
def test_a_replay_without_a_zoned_time_is_refused_quoting_it(raw: object) -> None:
    """No time, a word, a time without a zone or a number: InvalidRequest at /since, the
    detail quoting what was given."""
    with pytest.raises(InvalidRequest) as caught:
        replay_since(raw)
    assert repr(raw) in caught.value.detail
    assert [e.pointer for e in caught.value.errors] == ["/since"]


def test_callers_without_the_role_are_refused_before_anything_is_read() -> None:
    """Producers read no delivery log or routes; subscribers neither list nor redrive dead
    letters (admins only); no store is asked."""
    deliveries = actions(silent_redis())

    async def each() -> None:
        for call in (
            deliveries.log(PRODUCER, "sub", 10),
            deliveries.event_routes(PRODUCER, "event", None),
            deliveries.dead_letters(SUBSCRIBER, 10),
            deliveries.redrive(SUBSCRIBER, "delivery"),
        ):
            with pytest.raises(Forbidden):
                await call

    asyncio.run(each())


def test_only_a_dead_letter_may_be_redriven(redis_url: str) -> None:
    """A delivery id that names no dead letter is NotFound, quoting it."""

    async def work(redis: aioredis.Redis) -> NotFound:
        with pytest.raises(NotFound) as caught:
            await actions(redis).redrive(ADMIN, "no-such-delivery")
        return caught.value

    assert "'no-such-delivery'" in with_async_redis(redis_url, work).detail
