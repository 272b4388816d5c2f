"""The event submission use case, called in-process as every door calls it: who may post,
what is judged before anything is stored, and how duplicates are told apart."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from incidents.errors import Forbidden, InvalidCloudEvent
from incidents.ingest.pipeline import Ingestor
from incidents.store.events import Accepted, EventStore
from incidents.usecases.event_submission import EventSubmission, MadeEvent, Submitted
from tests.support import event, with_async_redis
from tests.usecase_support import PRODUCER, REGISTRY, SUBSCRIBER, now, silent_redis


def submission(redis: aioredis.Redis) -> EventSubmission:
    store = EventStore(redis)
    return EventSubmission(Ingestor(REGISTRY, store, now))


def accepted(sequence: int, duplicate: bool) -> Accepted:
    return Accepted(f"e{sequence}", "/tests", sequence, duplicate, "INC-1")


def test_only_a_producer_may_post_events_and_it_is_refused_before_any_check() -> None:
    """A subscriber's post is Forbidden, even of an event that breaks every rule; nothing is
    read."""
    with pytest.raises(Forbidden):
        asyncio.run(submission(silent_redis()).submit(SUBSCRIBER, [{"bad": 1}], batch=False))


def test_a_broken_event_is_refused_before_anything_is_stored() -> None:
    """An event without the CloudEvents attributes is InvalidCloudEvent, one problem per
    missing attribute, and the store is never asked."""
    with pytest.raises(InvalidCloudEvent) as caught:
        asyncio.run(submission(silent_redis()).submit(PRODUCER, [{"id": "x"}], batch=False))
    assert {"/source", "/type", "/specversion"} <= {e.pointer for e in caught.value.errors}


@pytest.mark.parametrize(
    ("flags", "duplicates", "all_duplicates"),
    [((), 0, False), ((False, True), 1, False), ((True, True), 2, True)],
)
def test_a_submission_counts_its_duplicates(
    flags: tuple[bool, ...], duplicates: int, all_duplicates: bool
) -> None:
    """Only a submission whose every event was stored before is all duplicates; none is not."""
    done = Submitted.of([accepted(i, d) for i, d in enumerate(flags)])
    assert (done.duplicates, done.all_duplicates) == (duplicates, all_duplicates)


def test_a_made_event_says_what_became_of_its_alert_only_when_it_planned_one() -> None:
    """The answer of an event with no alert is the accepted event alone."""
    plain = MadeEvent(accepted(1, False), None).to_dict()
    alerted = MadeEvent(accepted(2, False), {"outcome": "opened"}).to_dict()
    assert "alert" not in plain
    assert alerted == {**accepted(2, False).to_dict(), "alert": {"outcome": "opened"}}


def test_the_same_event_posted_twice_is_stored_once(redis_url: str) -> None:
    """The second post of an event (same id and source) is a duplicate of the first, with the
    same sequence."""
    declared = event()

    async def work(redis: aioredis.Redis) -> tuple[Submitted, Submitted]:
        events = submission(redis)
        first = await events.submit(PRODUCER, [declared], batch=False)
        return first, await events.submit(PRODUCER, [declared], batch=False)

    first, again = with_async_redis(redis_url, work)
    assert not first.all_duplicates and again.all_duplicates
    assert again.accepted[0].sequence == first.accepted[0].sequence
