"""Partitions (INCIDENTS_PARTITIONS): which one holds an incident, an alert or an event, their
key names, and the number a deployment keeps."""

from __future__ import annotations

import zlib

import pytest
import redis

from incidents.cli.preflight import PartitionsRefused, check_partitions
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.keys import Partitions


def test_one_partition_keeps_the_names_of_one_redis() -> None:
    """One partition on one Redis names every key as the module's constants do."""
    space = Partitions(1).spaces[0]
    assert space.SEQUENCE == keys.SEQUENCE == "incidents:seq"
    assert space.OUTBOX == keys.OUTBOX
    assert space.timeline("INC-3") == keys.timeline("INC-3")
    assert space.incident("INC-3") == keys.incident("INC-3")
    assert space.alert("t", "k") == keys.alert("t", "k")
    assert space.event_ids("e-1") == keys.event_ids("e-1")
    assert space.event_hash(130) == keys.event_hash(130)
    assert space.lane("s1", "INC-3") == keys.lane("s1", "INC-3")
    assert space.deliveries(7) == keys.deliveries(7)
    assert space.attempts("s1") == keys.attempts("s1")
    assert space.channel_state("s1") == keys.channel_state("s1")
    assert space.incident_refs("INC-3") == keys.incident_refs("INC-3")


def _slot_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


def test_every_key_of_a_partition_carries_its_hash_tag() -> None:
    """With several partitions (or on a cluster), every key of partition n hashes by p<n>,
    whatever incident, alert or sequence it is for."""
    for layout in (Partitions(4), Partitions(1, tagged=True)):
        for space in layout:
            names = [getattr(space, n) for n in keys._PARTITION_NAMES]
            names += [
                space.events(3),
                space.event_ids("x"),
                space.timeline("INC-9"),
                space.incident("{odd}"),
                space.incident_refs("INC-9"),
                space.alert("tenant", "{key}"),
                space.lane("sub", "INC-9"),
                space.deliveries(2),
                space.attempts("sub"),
                space.channel_state("sub"),
            ]
            assert {_slot_tag(n) for n in names} == {
                keys.partition_tag(space.partition, space.count)
            }


def test_the_gateway_numbers_incidents_of_a_partition_in_that_partition() -> None:
    """INC-<n> assigned for partition p is found in partition p again, for any count."""
    for count in (1, 2, 3, 8):
        layout = Partitions(count)
        for space in layout:
            for counter in range(1, 20):
                number = layout.incident_number(space, counter)
                assert layout.of_incident(f"INC-{number}") is space
        numbers = {layout.incident_number(s, c) for s in layout for c in range(1, 11)}
        assert numbers == set(range(1, 10 * count + 1)), "no number twice, none skipped"


def test_other_ids_spread_over_the_partitions_by_a_checksum() -> None:
    """An id the gateway did not assign, an alert and an event without incident land where a
    CRC-32 of them says, so every process finds them in the same partition."""
    layout = Partitions(4)
    ids = [f"checkout-{n}" for n in range(400)] + ["INC-0", "INC-01", "inc-5"]
    seen = {layout.of_incident(i).partition for i in ids}
    assert seen == {0, 1, 2, 3}
    assert layout.of_incident("INC-0").partition == zlib.crc32(b"5:INC-0") % 4
    a = layout.of_alert("ab", "c")
    assert a is layout.of_alert("ab", "c")
    assert layout.of_alert("a", "bc").partition == zlib.crc32(b"1:a2:bc") % 4
    assert layout.of_event("src", "id").partition == zlib.crc32(b"3:src2:id") % 4


def test_global_keys_share_one_tag_on_a_cluster() -> None:
    """On a Redis Cluster the global keys hash by {g}; back on one Redis, today's names."""
    plain = keys.SUBSCRIPTIONS, keys.subscription("s"), keys.token_key("d")
    with keys.cluster_names():
        tagged = keys.SUBSCRIPTIONS, keys.subscription("s"), keys.token_key("d")
        assert {_slot_tag(k) for k in tagged} == {"g"}
        assert _slot_tag(keys.route_exact("im.x")) == "g"
    assert (keys.SUBSCRIPTIONS, keys.subscription("s"), keys.token_key("d")) == plain
    assert plain[0] == "incidents:subs"


def test_a_deployment_keeps_the_number_it_was_created_with(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """The first start records INCIDENTS_PARTITIONS; another number later is refused, naming
    both numbers; the same number starts."""
    four = settings.replace(partitions=4)
    check_partitions(four)
    assert int(redis_client.get(keys.PARTITIONS) or 0) == 4
    with pytest.raises(PartitionsRefused, match=r"INCIDENTS_PARTITIONS=2.*4 partition"):
        check_partitions(settings.replace(partitions=2))
    check_partitions(four)


def test_data_from_before_the_number_was_recorded_counts_as_one_partition(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """A Redis that already holds one partition's sequence refuses INCIDENTS_PARTITIONS=4."""
    redis_client.set(keys.SEQUENCE, 12)
    with pytest.raises(PartitionsRefused, match="1 partition"):
        check_partitions(settings.replace(partitions=4))
    check_partitions(settings)


def test_a_sequence_says_its_partition_and_buckets_hold_its_own_sequences() -> None:
    """Partition p's counter-th event gets a sequence that no other partition gets, leads back
    to p, and EVENT_BUCKET consecutive ones of p share one event hash."""
    for count in (1, 3):
        layout = Partitions(count)
        seen: set[int] = set()
        for space in layout:
            sequences = [layout.sequence(space, c) for c in range(1, 200)]
            assert all(layout.of_sequence(s) is space for s in sequences)
            seen.update(sequences)
            hashes = [space.event_hash(s) for s in sequences]
            assert max(hashes.count(h) for h in hashes) == keys.EVENT_BUCKET
        assert len(seen) == 199 * count
    assert Partitions(1).spaces[0].event_hash(130) == keys.event_hash(130)


def test_partitions_lie_evenly_over_the_slots_of_a_cluster() -> None:
    """Partition n's tag hashes into the n-th of P equal ranges of slots (as Redis hashes it),
    so three primaries with equal ranges hold an equal share of six partitions."""
    from redis.crc import key_slot

    for count in (2, 3, 6, 16, 100):
        for n in range(count):
            tag = keys.partition_tag(n, count)
            assert tag == f"p{n}" or tag.startswith(f"p{n}.")
            slot = key_slot(f"incidents:{{{tag}}}:seq".encode())
            assert n * keys.CLUSTER_SLOTS // count <= slot < (n + 1) * keys.CLUSTER_SLOTS // count
    thirds = [
        keys.cluster_slot(keys.partition_tag(n, 6)) * 3 // keys.CLUSTER_SLOTS for n in range(6)
    ]
    assert sorted(thirds) == [0, 0, 1, 1, 2, 2]
