"""The subscription use cases, called in-process as every door calls them: who may manage
subscriptions, which sinks may be registered, and how a secret is rotated."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import Forbidden, InvalidRequest, NotFound
from incidents.model.principal import Principal
from incidents.settings import Settings
from incidents.usecases.subscription_actions import SubscriptionActions
from tests.support import with_async_redis
from tests.usecase_support import NOW, PRODUCER, SUBSCRIBER, now, queries, silent_redis

OPEN = Settings(allow_private_sinks=True, allow_insecure_sinks=True, secret_grace=3600)


def actions(redis: aioredis.Redis, settings: Settings = OPEN) -> SubscriptionActions:
    return SubscriptionActions(settings, DeliveryQueries(redis), queries(redis), now)


def test_a_caller_without_the_subscriber_role_is_refused_before_anything_is_read() -> None:
    """A producer may not register, list, read, change, delete or rotate; no store is asked."""
    subs = actions(silent_redis())

    async def each() -> None:
        for call in (
            subs.register(PRODUCER, {"sink": "https://example.com/hook"}, None),
            subs.visible(PRODUCER),
            subs.owned(PRODUCER, "sub"),
            subs.delete(PRODUCER, "sub"),
            subs.rotate_secret(PRODUCER, "sub"),
        ):
            with pytest.raises(Forbidden):
                await call

    asyncio.run(each())


def test_a_sink_that_may_not_be_called_is_refused_before_anything_is_stored() -> None:
    """Without INCIDENTS_ALLOW_PRIVATE_SINKS, a sink on a private address is refused, with a
    pointer to the sink, and nothing is written."""
    subs = actions(silent_redis(), Settings())
    document = {"sink": "https://10.1.2.3/hook"}
    with pytest.raises(InvalidRequest) as caught:
        asyncio.run(subs.register(SUBSCRIBER, document, "gateway.example"))
    assert [e.pointer for e in caught.value.errors] == ["/sink"]


def test_a_rotated_secret_is_new_and_the_previous_one_signs_for_the_grace(redis_url: str) -> None:
    """Rotation gives a new secret; the old ones sign until the clock plus the grace, and
    another subscriber cannot rotate it."""

    async def work(redis: aioredis.Redis) -> tuple[str, str, str]:
        subs = actions(redis)
        made = await subs.register(SUBSCRIBER, {"sink": "http://127.0.0.1:9/hook"}, None)
        other = Principal("s2", "other", frozenset({"subscriber"}))
        with pytest.raises(NotFound):
            await subs.rotate_secret(other, made.subscription.id)
        done = await subs.rotate_secret(SUBSCRIBER, made.subscription.id)
        return made.secret, done.secret, done.previous_until

    first, second, until = with_async_redis(redis_url, work)
    assert second != first
    assert until == (NOW + timedelta(seconds=3600)).isoformat()
