"""The id index's records: written and read alike by Python and by the Lua scripts."""

from __future__ import annotations

from typing import cast

import redis

from incidents.store import event_index, keys
from incidents.store.scripts import load_script

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
