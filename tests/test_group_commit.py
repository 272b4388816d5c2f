"""Group commit: concurrent calls to the event store share script calls, and each call stays
all-or-nothing on its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis

from incidents.errors import StoreUnavailable
from incidents.model.cloudevent import CloudEvent
from incidents.store import keys
from incidents.store.events import Accepted, Draft, EventStore, VersionConflict, VersionedWrite
from incidents.store.redis import connect_async
from tests.support import event

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def draft(**attrs: str) -> Draft:
    return Draft(CloudEvent.from_dict(event("im.incident.note", **attrs)), "tester")


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
        stats.get("cmdstat_eval", {}).get("calls", 0)
    )


async def accept_all(url: str, groups: list[list[Draft]]) -> list[list[Accepted] | BaseException]:
    client = connect_async(url)
    store = EventStore(client)
    try:
        return await asyncio.gather(*(store.accept(g, NOW) for g in groups), return_exceptions=True)
    finally:
        await client.aclose()


def test_concurrent_calls_share_script_calls_and_keep_their_order(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Forty concurrent calls take fewer script calls than calls, each event gets its own
    sequence in submission order, and every event can be read back."""
    groups = [[draft(imincidentid=f"GC-{n}")] for n in range(40)]
    before = script_calls(redis_client)
    results = asyncio.run(accept_all(redis_url, groups))
    calls = script_calls(redis_client) - before
    assert calls < len(groups), calls
    sequences: list[int] = []
    for group, result in zip(groups, results, strict=True):
        assert isinstance(result, list), result
        assert [a.id for a in result] == [d.event.id for d in group]
        assert not any(a.duplicate for a in result)
        sequences.extend(a.sequence for a in result)
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    assert int(redis_client.get(keys.SEQUENCE) or 0) >= max(sequences)
    assert redis_client.xlen(keys.OUTBOX) == len(sequences)


def test_a_conflicting_call_does_not_hold_back_the_others(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A call whose versioned write is stale is refused whole; the calls beside it are stored."""
    key = "incidents:test:doc"
    redis_client.hset(key, mapping={"v": 3, "j": "{}"})
    stale = Draft(
        CloudEvent.from_dict(event("im.incident.note")),
        "tester",
        writes=[VersionedWrite(key, 1, {"x": 1})],
    )
    fine_before, fine_after = [draft()], [draft(), draft()]
    results = asyncio.run(accept_all(redis_url, [fine_before, [stale, draft()], fine_after]))
    assert isinstance(results[1], VersionConflict)
    assert results[1].key == key and results[1].current == 3
    assert isinstance(results[0], list) and isinstance(results[2], list)
    stored = [a for r in (results[0], results[2]) for a in r]
    assert len(stored) == 3 and not any(a.duplicate for a in stored)
    assert redis_client.hget(key, "v") == b"3"
    assert redis_client.xlen(keys.OUTBOX) == 3


def test_the_same_event_in_two_concurrent_calls_is_stored_once(redis_url: str) -> None:
    """Two calls carrying one (source, id) at the same moment: one stores it, the other is told
    it is a duplicate with the same sequence."""
    raw = event("im.incident.note")
    one = Draft(CloudEvent.from_dict(raw), "tester")
    two = Draft(CloudEvent.from_dict(raw), "tester")
    first, second = asyncio.run(accept_all(redis_url, [[one], [two]]))
    assert isinstance(first, list) and isinstance(second, list)
    assert [first[0].duplicate, second[0].duplicate] == [False, True]
    assert first[0].sequence == second[0].sequence


@pytest.mark.wired
def test_every_waiting_call_hears_that_redis_is_down() -> None:
    """With Redis unreachable, every concurrent call fails with StoreUnavailable; none hangs."""
    with socket_nobody_listens_on() as url:
        results = asyncio.run(
            asyncio.wait_for(accept_all(url, [[draft()] for _ in range(10)]), timeout=30)
        )
    assert all(isinstance(r, StoreUnavailable) for r in results), results


def test_a_store_outlives_its_event_loop(redis_url: str) -> None:
    """The same store keeps working when used from a new event loop (as worker jobs do)."""
    client = connect_async(redis_url)
    store = EventStore(client)

    async def once() -> int:
        try:
            return (await store.accept([draft()], NOW))[0].sequence
        finally:
            await client.aclose()  # connections belong to the loop that opened them

    first = asyncio.run(once())
    second = asyncio.run(once())
    assert second > first


class socket_nobody_listens_on:
    """A Redis URL on a port that was just free (so connections are refused)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    def __exit__(self, *exc: object) -> None:
        return None


def test_requests_given_together_are_stored_in_order_in_one_script_call(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """accept_each stores requests in the order given, in one script call: a request may
    write on top of the version an earlier one leaves, and one that conflicts is refused
    alone, each request getting its own answer."""
    key = "incidents:test:doc"

    def writing(expect: int) -> list[Draft]:
        note = CloudEvent.from_dict(event("im.incident.note"))
        return [Draft(note, "tester", writes=[VersionedWrite(key, expect, {"v": expect + 1})])]

    requests = [writing(0), writing(1), writing(5), writing(2), [draft()]]

    async def run() -> list[list[Accepted] | Exception]:
        client = connect_async(redis_url)
        try:
            return await EventStore(client).accept_each(requests, NOW)
        finally:
            await client.aclose()

    before = script_calls(redis_client)
    answers = asyncio.run(run())
    assert script_calls(redis_client) - before == 1
    assert isinstance(answers[2], VersionConflict) and answers[2].current == 2
    stored = [a for n, a in enumerate(answers) if n != 2]
    assert all(isinstance(a, list) and not a[0].duplicate for a in stored), answers
    sequences = [a[0].sequence for a in stored if isinstance(a, list)]
    assert sequences == sorted(sequences)
    assert redis_client.hget(key, "v") == b"3"
