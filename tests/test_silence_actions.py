"""The silence use cases, called in-process as every door calls them: who may silence, and
how many silences may run at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import Conflict, Forbidden, InvalidRequest
from incidents.silences.store import SilenceStore
from incidents.usecases.silence_actions import SilenceActions, silence_document
from tests.support import with_async_redis
from tests.usecase_support import ADMIN, NOW, PRODUCER, SUBSCRIBER, now, queries, silent_redis


def actions(redis: aioredis.Redis, most: int = 10) -> SilenceActions:
    return SilenceActions(SilenceStore(redis), DeliveryQueries(redis), queries(redis), now, most)


def document(**more: object) -> dict[str, object]:
    ends = (NOW + timedelta(hours=1)).isoformat()
    return {"filter": {"exact": {"imservice": "db"}}, "ends_at": ends, "comment": "x", **more}


def test_a_caller_without_the_subscriber_role_is_refused_before_anything_is_read() -> None:
    """A producer may not create, list, read or expire silences; no store is asked (the
    Redis here answers nothing)."""
    silences = actions(silent_redis())

    async def each() -> None:
        for call in (
            silences.create(PRODUCER, document()),
            silences.visible(PRODUCER),
            silences.get(PRODUCER, "s"),
            silences.expire(PRODUCER, "s"),
        ):
            with pytest.raises(Forbidden):
                await call

    asyncio.run(each())


def test_a_subscriber_must_name_its_own_subscriptions(redis_url: str) -> None:
    """A subscriber's silence naming no subscription, or one that is not its own, is
    refused with a pointer to each."""

    async def work(redis: aioredis.Redis) -> list[InvalidRequest]:
        silences, refused = actions(redis), []
        for doc in (document(), document(subscriptions=["not-mine"])):
            with pytest.raises(InvalidRequest) as caught:
                await silences.create(SUBSCRIBER, doc)
            refused.append(caught.value)
        return refused

    none, other = with_async_redis(redis_url, work)
    assert [e.pointer for e in none.errors] == ["/subscriptions"]
    assert [e.pointer for e in other.errors] == ["/subscriptions/0"]


def test_no_more_silences_run_than_the_setting_allows(redis_url: str) -> None:
    """With the most already pending or active, another is a Conflict until one expires."""

    async def work(redis: aioredis.Redis) -> tuple[list[str], str]:
        silences = actions(redis, most=2)
        made = [(await silences.create(ADMIN, document())).id for _ in range(2)]
        with pytest.raises(Conflict):
            await silences.create(ADMIN, document())
        await silences.expire(ADMIN, made[0])
        again = await silences.create(ADMIN, document())
        shown = [s.id for s in await silences.visible(ADMIN)]
        return shown, again.id

    shown, again = with_async_redis(redis_url, work)
    assert again in shown and len(shown) == 3


def test_a_silence_document_ends_a_length_after_its_start() -> None:
    """A length ends that long after the start given, else after now; a time is kept as
    given; parts left out are left out of the document."""
    later = silence_document({"exact": {}}, "why", "2h", NOW, starts="2026-05-04T00:00:00+00:00")
    now_on = silence_document({"exact": {}}, "why", "30m", NOW)
    fixed = silence_document({"exact": {}}, "why", "2026-06-01T00:00:00Z", NOW)
    assert later["ends_at"] == "2026-05-04T02:00:00+00:00"
    assert now_on == {"filter": {"exact": {}}, "comment": "why",
                      "ends_at": (NOW + timedelta(minutes=30)).isoformat()}  # fmt: skip
    assert fixed["ends_at"] == "2026-06-01T00:00:00Z"


def test_a_silence_document_with_a_bad_start_ends_after_now_and_keeps_the_start() -> None:
    """A start that is not a time is kept for create to refuse; the length counts from now."""
    made = silence_document({}, "why", "1h", NOW, starts="soon", subscriptions=["a"])
    assert made["starts_at"] == "soon" and made["subscriptions"] == ["a"]
    assert made["ends_at"] == (NOW + timedelta(hours=1)).isoformat()
