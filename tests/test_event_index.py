"""The id index's records: written and read alike by Python and by the Lua scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import redis
import redis.asyncio as aioredis

from incidents.model.cloudevent import CloudEvent
from incidents.store import event_index, keys
from incidents.store.events import Accepted, Draft, EventStore
from incidents.store.scripts import load_script
from tests.support import with_async_redis

AWKWARD = [
    (7, "/bench", "INC-1"),
    (12, "1 2 3 /spaced source", ""),
    (123456789, "urn:café:☃", "incident with spaces 9 9 9 "),
    (3, "", "x"),
]


def test_records_read_back_whatever_their_source_and_incident_hold() -> None:
    """Records side by side decode to the same sources, sequences and incidents, in order."""
    value = b"".join(event_index.encode(*r) for r in AWKWARD)
    found = event_index.decode(value)
    assert [(f.sequence, f.source, f.incident) for f in found] == AWKWARD
    assert event_index.find(value, "urn:café:☃") == found[2]
    assert event_index.find(value, "/elsewhere") is None
    assert event_index.decode(None) == []


def test_the_scripts_take_out_exactly_the_record_of_one_source(redis_client: redis.Redis) -> None:
    """``unindex`` removes one source's record, keeps the others byte for byte, and drops the
    field with the last one."""
    unindex = redis_client.register_script(load_script("unindex"))
    key, event_id = keys.event_ids("ev-1"), "ev-1"
    redis_client.hset(key, event_id, b"".join(event_index.encode(*r) for r in AWKWARD))
    assert unindex(keys=[key], args=[event_id, "1 2 3 /spaced source"]) == 1
    assert unindex(keys=[key], args=[event_id, "1 2 3 /spaced source"]) == 0
    left = event_index.decode(cast(bytes | None, redis_client.hget(key, event_id)))
    assert [(f.sequence, f.source, f.incident) for f in left] == [AWKWARD[0], *AWKWARD[2:]]
    for _, source, _ in (AWKWARD[0], *AWKWARD[2:]):
        assert unindex(keys=[key], args=[event_id, source]) == 1
    assert not redis_client.hexists(key, event_id)


def test_an_id_is_always_kept_in_the_same_one_of_a_fixed_number_of_buckets() -> None:
    """The bucket of an id depends on the id alone, and there are EVENT_ID_BUCKETS of them."""
    names = {keys.event_ids(f"id-{n}") for n in range(20_000)}
    assert len(names) == keys.EVENT_ID_BUCKETS
    assert keys.event_ids("id-42") == keys.event_ids("id-42")


def test_one_event_twice_in_one_script_call_is_stored_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Drafts of one (source, id) in one request, and in two requests committed by the same
    script call, are stored once: each later one is answered as a duplicate of the first."""
    ev = CloudEvent({"specversion": "1.0", "id": "twice", "source": "/s", "type": "im.note"})
    other = CloudEvent({**ev.attributes, "source": "/other"})
    at = datetime(2026, 1, 2, tzinfo=UTC)

    async def work(client: aioredis.Redis) -> list[list[Accepted] | Exception]:
        store = EventStore(client)
        return await store.accept_each([[Draft(ev), Draft(ev), Draft(other)], [Draft(ev)]], at)

    first, second = with_async_redis(redis_url, work)
    assert isinstance(first, list) and isinstance(second, list)
    assert [a.duplicate for a in first + second] == [False, True, False, True]
    assert first[0].sequence == first[1].sequence == second[0].sequence != first[2].sequence
    value = cast(bytes, redis_client.hget(keys.event_ids("twice"), "twice"))
    assert [(r.source, r.sequence) for r in event_index.decode(value)] == [
        ("/s", first[0].sequence),
        ("/other", first[2].sequence),
    ]
