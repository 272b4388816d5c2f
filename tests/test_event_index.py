"""The id index: written and read alike by Python and by the Lua scripts, in one or two
fields per look-up however many sources share an id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import redis
import redis.asyncio as aioredis

from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.store import event_index, keys
from incidents.store.events import Accepted, Draft, EventStore
from incidents.store.scripts import load_script
from tests.support import with_async_redis

AWKWARD = [
    (7, "/bench", "INC-1"),
    (12, "1 2 3 /spaced source", ""),
    (123456789, "urn:café:☃", "incident with spaces 9 9 9 "),
]
AT = datetime(2026, 1, 2, tzinfo=UTC)


def note(event_id: str, source: str) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": event_id, "source": source, "type": "im.n"})


def test_a_record_reads_back_whatever_its_source_and_incident_hold() -> None:
    """A record decodes to the same source, sequence and incident; the mark of a first event
    gone and no record at all decode to nothing."""
    for seq, source, incident in AWKWARD:
        assert event_index.decode(event_index.encode(seq, source, incident)) == (
            event_index.Indexed(source, seq, incident)
        )
    assert event_index.decode(event_index.GONE) is None
    assert event_index.decode(None) is None
    first, other = event_index.encode(1, "/a", ""), event_index.encode(2, "/b", "")
    assert event_index.found(first, other, "/b") == event_index.Indexed("/b", 2, "")
    assert event_index.found(first, None, "/a") == event_index.Indexed("/a", 1, "")
    assert event_index.others_pattern("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\\n*"


def test_many_sources_share_an_id_each_found_by_one_or_two_fields(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Forty sources storing one id: each is a duplicate of itself only, each is found by
    (source, id), all are found by the id, and taking them out of the index one by one (the
    first first) leaves the others findable and, at the end, nothing of the id."""
    sources = [f"/src/{n}" for n in range(40)]
    bucket = keys.event_ids("shared")

    async def store_all(client: aioredis.Redis) -> list[list[Accepted] | Exception]:
        return await EventStore(client).accept_each(
            [[Draft(note("shared", s))] for s in sources], AT
        )

    answers = with_async_redis(redis_url, store_all)
    sequences = [a[0].sequence for a in answers if isinstance(a, list)]
    assert len(sequences) == len(sources)
    fields = {f.decode() for f in cast(list[bytes], redis_client.hkeys(bucket))}
    assert {"shared", "shared\n"} | {f"shared\n{s}" for s in sources[1:]} == fields
    assert redis_client.hget(bucket, "shared\n") == b"39"

    async def look(client: aioredis.Redis) -> tuple[list[int | None], list[StoredEvent], int]:
        store = EventStore(client)
        again = await store.existing([note("shared", s) for s in [*sources, "/new"]])
        each = [(await store.find("shared", s))[0] for s in sources]
        return again, each, len(await store.find("shared"))

    again, each, together = with_async_redis(redis_url, look)
    assert again == [*sequences, None]
    assert [s.event.source for s in each] == sources
    assert [s.sequence for s in each] == sequences and together == len(sources)

    unindex = redis_client.register_script(load_script("unindex"))
    assert unindex(keys=[bucket], args=["shared", sources[0]]) == 1
    assert redis_client.hget(bucket, "shared") == event_index.GONE
    assert unindex(keys=[bucket], args=["shared", sources[0]]) == 0

    async def left(client: aioredis.Redis) -> list[int | None]:
        return await EventStore(client).existing([note("shared", s) for s in sources])

    assert with_async_redis(redis_url, left) == [None, *sequences[1:]]
    for source in sources[1:]:
        assert unindex(keys=[bucket], args=["shared", source]) == 1
    assert not [f for f in cast(list[bytes], redis_client.hkeys(bucket)) if f.startswith(b"shared")]


def test_one_event_twice_in_one_script_call_is_stored_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Drafts of one (source, id) in one request, and in two requests committed by the same
    script call, are stored once: each later one is answered as a duplicate of the first."""
    ev, other = note("twice", "/s"), note("twice", "/other")

    async def work(client: aioredis.Redis) -> list[list[Accepted] | Exception]:
        store = EventStore(client)
        return await store.accept_each([[Draft(ev), Draft(ev), Draft(other)], [Draft(ev)]], AT)

    first, second = with_async_redis(redis_url, work)
    assert isinstance(first, list) and isinstance(second, list)
    assert [a.duplicate for a in first + second] == [False, True, False, True]
    assert first[0].sequence == first[1].sequence == second[0].sequence != first[2].sequence
    bucket = keys.event_ids("twice")
    assert event_index.decode(cast(bytes, redis_client.hget(bucket, "twice"))) == (
        event_index.Indexed("/s", first[0].sequence, "")
    )
    assert event_index.decode(cast(bytes, redis_client.hget(bucket, "twice\n/other"))) == (
        event_index.Indexed("/other", first[2].sequence, "")
    )
    assert redis_client.hget(bucket, "twice\n") == b"1"


def test_an_id_is_always_kept_in_the_same_one_of_a_fixed_number_of_buckets() -> None:
    """The bucket of an id depends on the id alone, and there are EVENT_ID_BUCKETS of them."""
    names = {keys.event_ids(f"id-{n}") for n in range(20_000)}
    assert len(names) == keys.EVENT_ID_BUCKETS
    assert keys.event_ids("id-42") == keys.event_ids("id-42")
