"""Retention and import with several partitions (INCIDENTS_PARTITIONS=3 on one Redis): the
sweeper works each partition on its own keys, archives everything it removes, never removes
what a partition still needs; an export of a one-partition deployment imported into three
partitions holds the same incidents, timelines, alerts and events, each in its partition."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import redis

from incidents.archive.daily import Archive
from incidents.archive.records import INCIDENT_TYPE, Line, encode, parse_line, snapshot
from incidents.archive.restore import Restorer
from incidents.cli.main import main
from incidents.delivery.lanes import Delivery, DeliveryState
from incidents.model.cloudevent import StoredEvent
from incidents.retention import event_removal
from incidents.retention.counts import removed as removed_total
from incidents.retention.counts import removed_keys, summed
from incidents.retention.sweeper import Sweeper
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.events import read_events, stored_event
from incidents.store.redis import connect
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import admin_gateway, event, text, with_async_redis
from tests.test_export_import import build_history, everything
from tests.test_retention import DAY, archived, quiet_alert, sweep

THREE = 3
_TAGGED = re.compile(r"incidents:\{p(\d+)(?:\.\d+)?\}:")
_GLOBAL = {"incidents:partitions"}  # the global keys an import writes (keys.PARTITIONS)


def migrate(
    settings: Settings, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Settings:
    """Export what the one-partition gateway stored, empty its Redis and import the export
    into three partitions there, as a new deployment would; the new deployment's settings."""
    exported = tmp_path / "export.jsonl.gz"
    env = {"INCIDENTS_REDIS_URL": redis_url}
    assert main(["export", "--output", str(exported)], environ=env) == 0
    redis.Redis.from_url(redis_url).flushdb()
    assert main(["import", str(exported)], environ={**env, "INCIDENTS_PARTITIONS": "3"}) == 0
    print(capsys.readouterr().err, file=sys.stderr)  # the import's warnings, for the caller
    return settings.replace(partitions=THREE)


def partition_of_key(key: str) -> int:
    """The partition whose hash tag the key carries (AssertionError for a key without)."""
    found = _TAGGED.match(key)
    assert found is not None, f"{key} carries no partition's tag"
    return int(found[1])


def partition_keys(client: redis.Redis) -> Iterator[str]:
    """Every key but the global ones, each checked to carry a partition's tag."""
    for raw in client.scan_iter(count=1000):
        key = text(raw)
        if key not in _GLOBAL:
            partition_of_key(key)
            yield key


def members(client: redis.Redis, key: str) -> list[bytes]:
    """The members of a sorted set, lowest score first."""
    return cast(list[bytes], client.zrange(key, 0, -1))


def stored_events(client: redis.Redis, layout: keys.Partitions) -> dict[int, list[StoredEvent]]:
    """Every stored event, by the partition whose event hashes hold it."""
    found: dict[int, list[StoredEvent]] = {}
    for space in layout:
        for bucket in client.scan_iter(match=space.EVENTS_PREFIX + "*", count=1000):
            raws = cast(dict[bytes, bytes], client.hgetall(bucket))
            found.setdefault(space.partition, []).extend(stored_event(r) for r in raws.values())
    return found


def view(client: redis.Redis, layout: keys.Partitions) -> dict[str, Any]:
    """What the stored data says, in a form that does not depend on where it is kept:
    incident and alert documents, each timeline as its events' ids in order, and every event
    (without its sequence) by source and id."""
    shown: dict[str, Any] = {"incidents": {}, "alerts": {}, "timelines": {}, "events": {}}
    by_sequence: dict[int, StoredEvent] = {}
    for events in stored_events(client, layout).values():
        for stored in events:
            by_sequence[stored.sequence] = stored
            shown["events"][f"{stored.event.source} {stored.event.id}"] = (
                stored.event.to_dict(),
                stored.ingested_at,
                stored.principal,
            )
    for space in layout:
        for member in cast(list[bytes], client.zrange(space.INCIDENT_INDEX, 0, -1)):
            incident = member.decode()
            shown["incidents"][incident] = orjson.loads(
                cast(bytes, client.hget(space.incident(incident), "j"))
            )
            sequences = cast(list[bytes], client.zrange(space.timeline(incident), 0, -1))
            shown["timelines"][incident] = [by_sequence[int(s)].event.id for s in sequences]
        for member in cast(list[bytes], client.zrange(space.ALERT_INDEX, 0, -1)):
            alert = orjson.loads(cast(bytes, client.hget(member.decode(), "j")))
            shown["alerts"][f"{alert['tenant']}/{alert['key']}"] = alert
    return shown


def test_an_export_of_one_partition_imported_into_three_holds_the_same_in_its_partitions(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Growing a deployment: the same incidents, timelines (in order), alerts and events; each
    in the partition the three-partition layout says, every key with its partition's tag; a
    sequence says its partition; and the next incident ids and sequences the gateway assigns
    in each partition are new ones."""
    build_history(client)
    publish(client, *[quiet_alert(f"disk-{n}") for n in range(30)])
    before = view(redis_client, keys.ONE)

    three = migrate(settings, redis_url, tmp_path, capsys).layout

    warned = capsys.readouterr().err
    assert int(redis_client.get(keys.PARTITIONS) or 0) == THREE
    assert view(redis_client, three) == before
    assert list(partition_keys(redis_client)) != []
    for partition, events in stored_events(redis_client, three).items():
        for stored in events:
            assert three.of_sequence(stored.sequence).partition == partition
            incident = str(stored.event.get("imincidentid") or "")
            if incident:
                assert three.of_incident(incident).partition == partition
    for incident in before["incidents"]:
        assert redis_client.exists(three.of_incident(incident).incident(incident))
    assert {
        three.of_alert(a["tenant"], a["key"]).alert(a["tenant"], a["key"])
        for a in before["alerts"].values()
    } == {text(m) for s in three for m in members(redis_client, s.ALERT_INDEX)}
    apart = [
        a
        for a in before["alerts"].values()
        if a.get("incident")
        and three.of_incident(a["incident"]) is not three.of_alert(a["tenant"], a["key"])
    ]
    assert bool(apart) == (f"{len(apart)} alert(s) are linked to an incident" in warned)
    taken = {s.sequence for events in stored_events(redis_client, three).values() for s in events}
    for space in three:
        number = three.incident_number(space, int(redis_client.incr(space.INCIDENT_COUNTER)))
        assert f"INC-{number}" not in before["incidents"]
        assert three.of_incident(f"INC-{number}") is space
        assert three.sequence(space, int(redis_client.incr(space.SEQUENCE))) not in taken


def without_sequences(shown: Any) -> Any:
    """What the API showed, without the gateway sequences (which an import into another
    partition count renumbers) and the cursors made of them."""
    if isinstance(shown, dict):
        return {
            k: without_sequences(v)
            for k, v in shown.items()
            if k not in ("sequence", "imsequence", "next", "next_cursor")
        }
    if isinstance(shown, list):
        return [without_sequences(v) for v in shown]
    return shown


def test_grown_to_three_partitions_the_api_shows_the_same_and_numbers_on(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A gateway on three partitions, on the import of a one-partition deployment's export,
    shows the same incidents, timelines, alerts and events (sequences aside), each timeline in
    its order, and declares new incidents under ids the export did not hold."""
    sent = build_history(client)
    before = everything(client, sent)

    three = migrate(settings, redis_url, tmp_path, capsys)

    with admin_gateway(three) as grown:
        after = everything(grown, sent)
        assert without_sequences(after) == without_sequences(before)
        for incident in before["incidents"]:
            timeline = after[incident["id"] + "/timeline"]["timeline"]
            assert [e["sequence"] for e in timeline] == sorted(e["sequence"] for e in timeline)
        declared = set()
        for n in range(2 * THREE):
            body = event(data={"title": f"new {n}", "severity": "SEV3", "service": "s"})
            accepted = publish(grown, body)[0]
            declared.add(accepted["incident"])
        assert len(declared) == 2 * THREE
        assert declared.isdisjoint(i["id"] for i in before["incidents"])


_PARTITION_PARTS = (
    *(f"incidents:{name}" for name in keys._PARTITION_NAMES.values()),
    "incidents:event-ids:",
    "incidents:timeline:",
    "incidents:incident:",
    "incidents:alert:",
    "incidents:deliveries:",
)


def untagged(client: redis.Redis) -> list[str]:
    """Keys named as one partition on one Redis names them: what a three-partition
    deployment must never write."""
    found = []
    for raw in client.scan_iter(match="incidents:*", count=1000):
        key = text(raw)
        if _TAGGED.match(key):
            continue
        if key.startswith(_PARTITION_PARTS) or key.endswith((":attempts", ":channels")):
            found.append(key)
    return found


def test_on_three_partitions_what_was_delivered_goes_from_every_partition(
    settings: Settings,
    redis_client: redis.Redis,
    rx: Receiver,
    tmp_path: Path,
) -> None:
    """A gateway and workers on three partitions: events delivered and past the retention go,
    archived first, from every partition, with their dedup keys, delivery records and
    attempt-log entries; /metrics sums the partitions' counts; no key is named without its
    partition's tag."""
    three = settings.replace(partitions=THREE)
    workers = Workers(three)
    try:
        with admin_gateway(three) as gateway:
            subscribe(gateway, rx, "/hook", types=["im.alert.*"])
            sent = [quiet_alert(f"k{n}") for n in range(30)]
            publish(gateway, *sent)
            workers.run_until(lambda: len(rx.at("/hook")) == len(sent))
            assert untagged(redis_client) == []
            archive = Archive(tmp_path / "archive")

            removed = sweep(three, redis_client, time.time() + 31 * DAY, archive)

            assert (removed["event"], removed["dedup"]) == (len(sent), len(sent))
            assert (removed["delivery"], removed["attempt"]) == (len(sent), len(sent))
            each = [int(redis_client.hget(s.RETENTION_REMOVED, "event") or 0) for s in three.layout]
            assert all(n > 0 for n in each) and sum(each) == len(sent)
            assert len([line for line in archived(archive.folder, "events") if line.stored]) == len(
                sent
            )
            assert stored_events(redis_client, three.layout) == {}
            shown = gateway.get("/metrics").text
            assert f'incidents_retention_removed_total{{kind="event"}} {len(sent)}' in shown
            assert untagged(redis_client) == []
    finally:
        workers.close()


def test_a_second_import_of_the_same_export_changes_nothing(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Importing into three partitions is idempotent: each event is found again in its
    partition and counted as a duplicate."""
    sent = build_history(client)
    three = migrate(settings, redis_url, tmp_path, capsys).layout
    once = view(redis_client, three)
    env = {"INCIDENTS_REDIS_URL": redis_url, "INCIDENTS_PARTITIONS": "3"}

    assert main(["import", str(tmp_path / "export.jsonl.gz")], environ=env) == 0

    assert f"events 0, duplicates {len(sent)}," in capsys.readouterr().out
    assert view(redis_client, three) == once


def test_an_import_into_a_deployment_of_another_partition_count_is_refused(
    client: httpx.Client,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Redis holding one partition's data refuses an import meant for three, writing
    nothing, and says how to grow instead."""
    publish(client, quiet_alert("x"))
    exported = tmp_path / "export.jsonl"
    env = {"INCIDENTS_REDIS_URL": redis_url}
    assert main(["export", "--output", str(exported)], environ=env) == 0
    stored = redis.Redis.from_url(redis_url)
    before = {text(k) for k in stored.scan_iter()}

    refused = main(["import", str(exported)], environ={**env, "INCIDENTS_PARTITIONS": "3"})

    assert refused == 2
    assert "INCIDENTS_PARTITIONS=1" in capsys.readouterr().err
    assert {text(k) for k in stored.scan_iter()} - {keys.PARTITIONS} == before
    assert int(stored.get(keys.PARTITIONS) or 0) == 1  # recorded, as a gateway's start does


def note(incident: str, sequence: int) -> Line:
    """An import line: a note on ``incident`` that was accepted with ``sequence``."""
    body = event("im.incident.note", imincidentid=incident)
    body.update(imsequence=sequence, imingestedat="2026-01-02T03:04:05+00:00")
    return parse_line(orjson.dumps(body), 1)


def test_a_timeline_keeps_its_order_when_an_import_numbers_some_of_its_events_anew(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Into partitions that already hold events: an event whose sequence is taken gets its
    partition's next one, and a later event of the same timeline whose old sequence is free
    comes after it, not before."""
    layout = settings.replace(partitions=THREE).layout
    Restorer(redis_client, layout=layout).restore([note("INC-4", 3), note("INC-4", 30)])
    first, second = note("INC-1", 3), note("INC-1", 6)  # INC-1 and INC-4: partition 0

    counts = Restorer(redis_client, layout=layout).restore([first, second])

    assert (counts["events"], counts["renumbered"]) == (2, 2)
    space = layout.of_incident("INC-1")
    sequences = [int(s) for s in members(redis_client, space.timeline("INC-1"))]
    assert all(layout.of_sequence(s) is space for s in sequences)
    shown = [stored_event(r).event.id for r in read_events(redis_client, sequences, layout) if r]
    assert shown == [line.stored.event.id for line in (first, second) if line.stored]


def delivered(sub: str, seq: int, state: DeliveryState) -> Delivery:
    """A delivery record of the event of ``seq`` to subscription ``sub_<sub>``."""
    return Delivery(
        id=f"d{seq}_{sub}", sub=f"sub_{sub}", seq=seq, lane="", state=state, created=time.time()
    )


def record_deliveries(client: redis.Redis, layout: keys.Partitions, sub: str) -> int:
    """A finished delivery record for every stored event, one of each partition dead; how
    many."""
    n = 0
    for partition, events in stored_events(client, layout).items():
        space = layout.spaces[partition]
        for i, stored in enumerate(events):
            state = DeliveryState.DEAD if i == 0 else DeliveryState.DELIVERED
            found = delivered(sub, stored.sequence, state)
            bucket = space.delivery_bucket(stored.sequence)
            client.hset(space.deliveries(bucket), found.id, found.encoded())
            client.zadd(space.DELIVERY_BUCKETS, {str(bucket): bucket})
            if state is DeliveryState.DEAD:
                client.zadd(space.DEAD_LETTERS, {found.id: found.created})
            n += 1
    return n


def test_each_partition_is_swept_steadily_on_its_own_keys_and_archived_first(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every step removes a bounded number of events from every partition (none waits for
    another), with their dedup keys and delivery records; each partition counts what it
    removed and the counts add up; the archive receives every event first; the partitions'
    keys keep their tags and nothing is left behind."""
    sent = [quiet_alert(f"k{n}") for n in range(90)]
    publish(client, *sent)
    three = migrate(settings, redis_url, tmp_path, capsys)
    layout = three.layout
    records = record_deliveries(redis_client, layout, "a1")
    by_partition = {p: len(e) for p, e in stored_events(redis_client, layout).items()}
    assert sorted(by_partition) == [0, 1, 2]
    monkeypatch.setattr(event_removal, "EVENTS_PER_STEP", 10)
    archive = Archive(tmp_path / "archive")
    sweeper = Sweeper(redis_client, three, lambda: time.time() + 31 * DAY, archive)

    first = sweeper.step()

    per_partition = [
        int(redis_client.hget(space.RETENTION_REMOVED, "event") or 0) for space in layout
    ]
    assert all(0 < n <= 10 for n in per_partition), per_partition  # a step's walk: 10 sequences
    assert first["event"] == sum(per_partition)
    total = first
    while removed := sweeper.step():
        total.update(removed)
    assert (total["event"], total["dedup"]) == (len(sent), len(sent))
    assert (total["delivery"], total["dead_letter"]) == (records, THREE)
    counted = summed(
        cast(dict[bytes, bytes], redis_client.hgetall(k)) for k in removed_keys(layout)
    )
    assert counted == total
    assert with_async_redis(redis_url, lambda r: removed_total(r, layout)) == total
    assert {
        p: int(redis_client.hget(layout.spaces[p].RETENTION_REMOVED, "event") or 0)
        for p in by_partition
    } == by_partition
    assert sorted(
        s.event.id for s in (line.stored for line in archived(archive.folder, "events")) if s
    ) == sorted(e["id"] for e in sent)
    assert len(archived(archive.folder, "deliveries")) == records
    left = sorted(partition_keys(redis_client))
    assert [k for k in left if "events:" in k or "event-ids:" in k or "deliver" in k] == []
    assert not any(
        k.startswith("incidents:sweep") or k.startswith("incidents:retention") for k in left
    )


def test_what_a_partition_still_needs_is_kept_and_holds_back_no_other_partition(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An event not routed yet holds back its partition's events from it on, a lane still
    holding an event holds back its partition from that event on, an open incident keeps
    its timeline: the other partitions are swept all the same."""
    publish(client, *[quiet_alert(f"k{n}") for n in range(60)])
    publish(client, event(imincidentid="INC-2"), event("im.incident.note", imincidentid="INC-2"))
    three = migrate(settings, redis_url, tmp_path, capsys)
    layout = three.layout
    found = stored_events(redis_client, layout)
    ordered = {p: sorted(s.sequence for s in e) for p, e in found.items()}
    unrouted, laned, free = layout.spaces
    held_at = ordered[unrouted.partition][len(ordered[unrouted.partition]) // 2]
    redis_client.xadd(unrouted.OUTBOX, {"seq": held_at})
    lane_at = ordered[laned.partition][len(ordered[laned.partition]) // 3]
    lane = laned.lane("sub_a1", "k")
    redis_client.zadd(lane, {"d1": lane_at})
    redis_client.zadd(laned.LANES_DUE, {lane: time.time()})
    timeline = layout.of_incident("INC-2")
    on_timeline = {int(s) for s in members(redis_client, timeline.timeline("INC-2"))}

    removed = Sweeper(redis_client, three, lambda: time.time() + 31 * DAY).sweep(30)

    assert removed is not None and removed["event"] > 0
    kept = {
        p: sorted(s.sequence for s in e) for p, e in stored_events(redis_client, layout).items()
    }
    assert kept.get(unrouted.partition, []) == [
        s for s in ordered[unrouted.partition] if s >= held_at or s in on_timeline
    ]
    assert kept.get(laned.partition, []) == [
        s for s in ordered[laned.partition] if s >= lane_at or s in on_timeline
    ]
    assert kept.get(free.partition, []) == [s for s in ordered[free.partition] if s in on_timeline]
    assert len(on_timeline) == 2
    assert list(partition_keys(redis_client)) != []


def test_each_partition_has_its_own_sweep_lease(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """A partition whose lease another worker holds is left to it; the others are swept, and
    their leases handed back; with every lease held, a sweep does nothing."""
    three = settings.replace(partitions=THREE)
    held = three.layout.spaces[1]
    redis_client.set(held.SWEEP_LOCK, "other", px=10_000)

    assert Sweeper(redis_client, three, time.time).sweep() == Counter()

    assert redis_client.get(held.SWEEP_LOCK) == b"other"
    assert [redis_client.exists(s.SWEEP_LOCK) for s in three.layout] == [0, 1, 0]
    for space in three.layout:
        redis_client.set(space.SWEEP_LOCK, "other", px=10_000)
    assert Sweeper(redis_client, three, time.time).sweep() is None


OLD = "2026-01-02T03:04:05+00:00"


def quiet(key: str, sequence: int) -> Line:
    """An import line: an alert trigger that declared no incident, accepted with
    ``sequence``."""
    body = quiet_alert(key)
    body.update(imsequence=sequence, imingestedat=OLD, imtenant="default")
    return parse_line(orjson.dumps(body), 1)


def closed(incident: str) -> Line:
    """An import line: the document of an incident closed long ago."""
    document = {"id": incident, "status": "closed", "declared_at": OLD, "updated_at": OLD}
    at = datetime.fromisoformat(OLD)
    return parse_line(encode(snapshot(INCIDENT_TYPE, incident, at, {"incident": document}, 3)), 1)


@pytest.mark.slow
def test_on_a_cluster_import_and_retention_keep_to_one_slot_per_partition(
    cluster: EmbeddedCluster, settings: Settings, tmp_path: Path
) -> None:
    """On a Redis Cluster, where a script or a MULTI on keys of two slots is refused, an
    import restores every event into its partition and the sweeper removes and archives all
    that is due: events, dedup keys, a closed incident with its timeline, delivery records,
    dead letters and attempt-log entries, in every partition."""
    lines = [quiet(f"k{n}", n) for n in range(1, 61)]
    lines += [note("INC-7", 61), note("INC-7", 62), closed("INC-7")]
    with keys.cluster_names():
        queue = settings.redis_url  # RQ on a Redis of its own
        on_cluster = settings.replace(
            redis_url=cluster.url, queue_redis_url=queue, partitions=THREE
        )
        layout = on_cluster.layout
        client = connect(cluster.url)
        try:
            assert Restorer(client, layout=layout).restore(lines)["events"] == 62
            found = stored_events(client, layout)
            assert sorted(len(found[p]) for p in found) != [] and len(found) == THREE
            records = record_deliveries(client, layout, "a1")
            client.sadd(keys.SUBSCRIPTIONS, "sub_a1")
            entry = orjson.dumps({"delivery": "d", "attempt": 1, "outcome": "ok", "time": OLD})
            for space in layout:
                client.lpush(space.attempts("sub_a1"), entry)
            archive = Archive(tmp_path / "archive")
            sweeper = Sweeper(client, on_cluster, lambda: time.time() + 400 * DAY, archive)

            total: Counter[str] = Counter()
            while removed := sweeper.step():
                total.update(removed)

            assert (total["event"], total["dedup"], total["incident"]) == (62, 62, 1)
            assert (total["delivery"], total["dead_letter"]) == (records, THREE)
            assert total["attempt"] == THREE
            assert stored_events(client, layout) == {}
            assert len([line for line in archived(archive.folder, "events") if line.stored]) == 62
        finally:
            client.close()
