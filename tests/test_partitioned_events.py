"""Events on a partitioned deployment (INCIDENTS_PARTITIONS=3 on one Redis, tagged keys): the
same behaviour as one partition, each event stored, deduplicated and read back in its own
partition, listings merged across them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.archive.export import Selection, export_records
from incidents.archive.records import ALERT_TYPE, INCIDENT_TYPE, SEQUENCE
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import DEFAULT_TENANT
from incidents.settings import Settings
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.events import Draft, EventStore, VersionConflict, VersionedWrite
from incidents.store.keys import Partitions, cluster_names, partition_tag, partitions
from incidents.store.redis import connect_async
from incidents.stream.hub import StreamOptions
from incidents.stream.marks import Mark
from tests.delivery_support import publish
from tests.support import (
    SharedServer,
    admin_client,
    admin_gateway,
    assert_problem,
    event,
    post,
)
from tests.test_stream import HEARTBEAT, Gateway

LAYOUT = partitions(3, True)
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


@pytest.fixture
def p3(settings: Settings) -> Settings:
    return settings.replace(partitions=3)


@pytest.fixture
def pc(p3: Settings, shared_server: SharedServer) -> Iterator[httpx.Client]:
    """An admin client of a gateway with three partitions."""
    with (
        shared_server.mounted(create_app(p3)) as url,
        admin_client(url, timeout=10) as client,
    ):
        yield client


def ids_in_each_partition(prefix: str, each: int = 2) -> list[str]:
    """Incident ids (not the gateway's INC-<n>), ``each`` of them in every partition."""
    found: dict[int, list[str]] = {0: [], 1: [], 2: []}
    n = 0
    while any(len(v) < each for v in found.values()):
        n += 1
        candidate = f"{prefix}-{n}"
        held = found[LAYOUT.of_incident(candidate).partition]
        if len(held) < each:
            held.append(candidate)
    return [i for p in sorted(found) for i in found[p]]


def key_in(partition: int, prefix: str, tenant: str = DEFAULT_TENANT) -> str:
    """A correlation key whose alert is in ``partition``."""
    n = 0
    while LAYOUT.of_alert(tenant, f"{prefix}-{n}").partition != partition:
        n += 1
    return f"{prefix}-{n}"


def alert(key: str, severity: str = "SEV3", **attrs: Any) -> dict[str, Any]:
    data = {"summary": f"{key} is failing", "severity": severity, "labels": {"service": "api"}}
    return event("im.alert.trigger", data, imcorrelationkey=key, **attrs)


def test_declares_with_and_without_ids_are_stored_in_their_partitions(pc: httpx.Client) -> None:
    """A declare naming an id is stored in that incident's partition, one without in the
    partition of its (source, id), with an INC-<n> numbered for that partition; each sequence
    says its partition and every incident reads back."""
    named = ids_in_each_partition("named", 1)
    with_ids = [event(imincidentid=i) for i in named]
    without = [event() for _ in range(6)]
    accepted = publish(pc, *with_ids, *without)
    for sent, got in zip(with_ids + without, accepted, strict=True):
        space = LAYOUT.of_event(sent["source"], sent["id"])
        if "imincidentid" in sent:
            space = LAYOUT.of_incident(sent["imincidentid"])
        assert LAYOUT.of_incident(got["incident"]) is space
        assert LAYOUT.of_sequence(got["sequence"]) is space
        body = pc.get(f"/v1/incidents/{got['incident']}")
        assert body.status_code == 200, body.text
        timeline = pc.get(f"/v1/incidents/{got['incident']}/timeline").json()["timeline"]
        assert [t["id"] for t in timeline] == [sent["id"]]
        assert pc.get(f"/v1/events/{sent['id']}").json()["sequence"] == got["sequence"]
    assigned = [a["incident"] for a in accepted[len(named) :]]
    assert len(set(assigned)) == 6 and all(i.startswith("INC-") for i in assigned)


def test_notes_keep_each_incidents_order_across_partitions(pc: httpx.Client) -> None:
    """Notes on incidents of every partition, in one batch and one by one, stand on each
    incident's timeline in the order sent, with growing sequences."""
    incidents = ids_in_each_partition("ordered")
    publish(pc, *(event(imincidentid=i) for i in incidents))
    notes = [
        event("im.incident.note", {"text": f"{i} #{n}"}, imincidentid=i)
        for n in range(3)
        for i in incidents
    ]
    publish(pc, *notes[: len(incidents)])
    for note in notes[len(incidents) :]:
        assert post(pc, note).status_code == 202
    for incident in incidents:
        timeline = pc.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]
        texts = [t["body"] for t in timeline[1:]]
        assert texts == [f"{incident} #{n}" for n in range(3)]
        sequences = [t["sequence"] for t in timeline]
        assert sequences == sorted(sequences)
        assert {LAYOUT.of_sequence(s).partition for s in sequences} == {
            LAYOUT.of_incident(incident).partition
        }
        assert pc.get(f"/v1/incidents/{incident}").json()["version"] == 4


def test_an_alert_declares_its_incident_in_its_own_partition(pc: httpx.Client) -> None:
    """A SEV1 alert of each partition declares an incident numbered for that partition; a
    re-trigger attaches to it, and the alert reads back."""
    for partition in range(3):
        key = key_in(partition, "storm")
        first = publish(pc, alert(key, "SEV1"))[0]
        incident = first["incident"]
        assert LAYOUT.of_incident(incident).partition == partition
        assert LAYOUT.of_sequence(first["sequence"]).partition == partition
        again = publish(pc, alert(key, "SEV1"))[0]
        assert again["incident"] == incident
        body = pc.get(f"/v1/alerts/{key}").json()
        assert (body["count"], body["incident"]) == (2, incident)
        timeline = pc.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]
        assert [t["type"] for t in timeline] == ["im.alert.trigger", "im.alert.trigger"]


def test_an_alert_naming_an_incident_of_another_partition_is_refused_saying_why(
    pc: httpx.Client,
) -> None:
    """An alert event naming an incident held by another partition is a 422 that names both
    partitions and what to do; naming one of its own partition attaches it."""
    incident = ids_in_each_partition("target", 1)[0]  # partition 0
    publish(pc, event(imincidentid=incident))
    elsewhere = key_in(1, "far")
    r = post(pc, alert(elsewhere, imincidentid=incident))
    problem = assert_problem(r, 422, "cross-partition")
    assert "INCIDENTS_PARTITIONS=3" in problem["detail"] and incident in problem["detail"]
    assert (problem["incident_partition"], problem["alert_partition"]) == (0, 1)
    assert pc.get(f"/v1/alerts/{elsewhere}").status_code == 404
    near = key_in(0, "near")
    attached = publish(pc, alert(near, imincidentid=incident))[0]
    assert attached["incident"] == incident


def test_an_alert_linked_to_an_incident_of_another_partition_goes_on_without_it(
    pc: httpx.Client, redis_client: redis.Redis
) -> None:
    """An alert whose document links it to an open incident of another partition (as data
    imported from another layout can) still takes its events: they update the alert and are
    attached to no incident, and that incident's timeline is left alone."""
    incident = ids_in_each_partition("linked", 1)[0]  # partition 0
    publish(pc, event(imincidentid=incident))
    key = key_in(1, "linked")
    publish(pc, alert(key))
    doc_key = LAYOUT.spaces[1].alert(DEFAULT_TENANT, key)
    document = json.loads(redis_client.hget(doc_key, "j") or b"{}")
    version = int(redis_client.hget(doc_key, "v") or 0)
    linked = json.dumps({**document, "incident": incident})
    redis_client.hset(doc_key, mapping={"v": version + 1, "j": linked})
    timeline = pc.get(f"/v1/incidents/{incident}/timeline").json()
    accepted = publish(pc, alert(key))[0]
    assert "incident" not in accepted
    assert pc.get(f"/v1/alerts/{key}").json()["count"] == 2
    resolve = event("im.alert.resolve", {}, imcorrelationkey=key)
    resolved = publish(pc, resolve)[0]
    assert "incident" not in resolved
    assert pc.get(f"/v1/alerts/{key}").json()["status"] == "resolved"
    assert pc.get(f"/v1/incidents/{incident}/timeline").json() == timeline


def test_a_retried_batch_spanning_partitions_is_answered_as_duplicates(
    pc: httpx.Client,
) -> None:
    """A batch whose events fall into every partition, sent again, is answered 200 with each
    event's first sequence, and nothing is stored twice."""
    batch = [event(imincidentid=i) for i in ids_in_each_partition("retry")]
    batch += [event("im.incident.note", imincidentid=b["imincidentid"]) for b in batch]
    first = pc.post("/v1/events", content=json.dumps(batch), headers=BATCH)
    assert first.status_code == 202, first.text
    again = pc.post("/v1/events", content=json.dumps(batch), headers=BATCH)
    assert again.status_code == 200, again.text
    assert [a["sequence"] for a in again.json()["accepted"]] == [
        a["sequence"] for a in first.json()["accepted"]
    ]
    assert all(a.get("duplicate") for a in again.json()["accepted"])
    partitions_used = {
        LAYOUT.of_sequence(a["sequence"]).partition for a in first.json()["accepted"]
    }
    assert partitions_used == {0, 1, 2}


def test_a_part_refused_leaves_the_other_partitions_parts_stored_for_the_retry(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A request spanning partitions whose part in one partition conflicts is refused; the
    parts stored in the others stay, and the retry finds them as duplicates."""
    stale_id, fine_id = ids_in_each_partition("part", 1)[:2]
    stale_space = LAYOUT.of_incident(stale_id)
    doc = stale_space.incident(stale_id)
    redis_client.hset(doc, mapping={"v": 3, "j": "{}"})

    def note(incident: str, raw: dict[str, Any] | None = None) -> CloudEvent:
        return CloudEvent.from_dict(raw or event("im.incident.note", imincidentid=incident))

    stale_raw = event("im.incident.note", imincidentid=stale_id)
    fine = Draft(note(fine_id), "tester")
    stale = Draft(note(stale_id, stale_raw), "tester", writes=[VersionedWrite(doc, 1, {})])
    current = Draft(note(stale_id, stale_raw), "tester", writes=[VersionedWrite(doc, 3, {})])
    now = datetime(2026, 1, 1, tzinfo=UTC)

    async def run() -> tuple[object, object]:
        client = connect_async(redis_url)
        store = EventStore(client, layout=LAYOUT)
        try:
            (refused,) = await store.accept_each([[stale, fine]], now)
            (retried,) = await store.accept_each([[current, fine]], now)
            return refused, retried
        finally:
            await client.aclose()

    refused, retried = asyncio.run(run())
    assert isinstance(refused, VersionConflict) and refused.index == 0 and refused.key == doc
    assert isinstance(retried, list)
    assert [a.duplicate for a in retried] == [False, True]
    assert LAYOUT.of_sequence(retried[0].sequence) is stale_space


def _walk(client: httpx.Client, path: str, field: str) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    for _ in range(50):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = client.get(path, params=params).json()
        pages.append(body[field])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("next_cursor never became null")


def test_listings_merge_the_partitions_behind_composite_cursors(pc: httpx.Client) -> None:
    """Incidents and alerts of every partition list newest first in one order; following
    next_cursor walks each once, in that order; a cursor of another layout is a 400."""
    incidents = ids_in_each_partition("listed", 3)
    for n, incident in enumerate(incidents):
        when = f"2026-01-01T00:00:{n:02d}Z"
        publish(pc, event(imincidentid=incident, time=when))
    keys = [key_in(p, f"listed-{n}") for n in range(2) for p in range(3)]
    for key in keys:
        publish(pc, alert(key))
    whole = pc.get("/v1/incidents").json()
    assert [i["id"] for i in whole["incidents"]] == incidents[::-1]
    pages = _walk(pc, "/v1/incidents", "incidents")
    assert [i["id"] for page in pages for i in page] == incidents[::-1]
    assert all(len(page) <= 2 for page in pages)
    alert_pages = _walk(pc, "/v1/alerts", "alerts")
    walked = [a["key"] for page in alert_pages for a in page]
    assert walked == [a["key"] for a in pc.get("/v1/alerts").json()["alerts"]]
    assert sorted(walked) == sorted(keys)
    one_partition_cursor = "WzEsbnVsbCwyXQ"  # [1,null,2]: a cursor of one partition's index
    for cursor in (one_partition_cursor, "!"):
        r = pc.get("/v1/incidents", params={"cursor": cursor})
        assert_problem(r, 400, "invalid-request")


def test_every_key_of_partition_n_carries_its_tag_and_holds_only_its_data(
    pc: httpx.Client, redis_client: redis.Redis
) -> None:
    """After declares, notes, alerts (one declaring) and a retried batch, every key a
    partition holds carries partition n's tag and holds only partition n's events, incidents
    and alerts; no partition key is left untagged."""
    incidents = ids_in_each_partition("tagged")
    batch = [event(imincidentid=i) for i in incidents] + [event() for _ in range(4)]
    publish(pc, *batch)
    publish(pc, *batch)
    publish(pc, *(event("im.incident.note", imincidentid=i) for i in incidents))
    publish(pc, *(alert(key_in(p, "tag"), "SEV1") for p in range(3)))
    untagged_allowed = {"incidents:partitions"}
    seen_partitions = set()
    for raw in redis_client.scan_iter("incidents:*", count=1000):
        key = raw.decode()
        if not key.startswith("incidents:{p"):
            assert key in untagged_allowed, f"an untagged key: {key}"
            continue
        tag = key[len("incidents:{") : key.index("}")]
        n = int(tag.removeprefix("p").partition(".")[0])
        assert tag == partition_tag(n, LAYOUT.count), key
        seen_partitions.add(n)
        _assert_holds_only(redis_client, key, n, LAYOUT)
    assert seen_partitions == {0, 1, 2}


def _assert_holds_only(client: redis.Redis, key: str, n: int, layout: Partitions) -> None:
    space = layout.spaces[n]
    kind = client.type(key)
    if key.startswith(space.EVENTS_PREFIX):
        for field, value in client.hgetall(key).items():
            assert layout.of_sequence(int(field)) is space, (key, field)
            stored = json.loads(value)
            assert stored[0] == int(field)
    elif key.startswith(space.prefix + "timeline:") or key == space.INCIDENT_INDEX:
        members = [m.decode() for m in cast(list[bytes], client.zrange(key, 0, -1))]
        if key == space.INCIDENT_INDEX:
            assert all(layout.of_incident(m) is space for m in members), (key, members)
        else:
            assert all(layout.of_sequence(int(m)) is space for m in members), (key, members)
    elif key == space.OUTBOX:
        for _, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(key)):
            assert layout.of_sequence(int(fields[b"seq"])) is space
    elif key.startswith(space.prefix + "incident:") and kind == b"hash":
        document = json.loads(client.hget(key, "j") or b"{}")
        assert layout.of_incident(document["id"]) is space, key
    elif key.startswith(space.prefix + "alert:"):
        document = json.loads(client.hget(key, "j") or b"{}")
        assert layout.of_alert(document["tenant"], document["key"]) is space, key
    elif key.startswith(space.prefix + "event-ids:"):
        for value in cast(list[bytes], client.hvals(key)):
            if b" " in value:  # a record (not "-", nor the count of an id's other sources)
                assert layout.of_sequence(int(value.split(b" ")[0])) is space, key


def test_export_reads_every_partition(p3: Settings, pc: httpx.Client) -> None:
    """incidents export writes the events of every partition in sequence order, then every
    partition's incidents and alerts."""
    incidents = ids_in_each_partition("exported", 1)
    accepted = publish(
        pc, *(event(imincidentid=i) for i in incidents), alert(key_in(2, "x"), "SEV1")
    )
    assert p3.redis_url is not None
    client = redis.Redis.from_url(p3.redis_url)
    try:
        records = list(export_records(client, Selection(), LAYOUT))
    finally:
        client.close()
    sequences = [r[SEQUENCE] for r in records if SEQUENCE in r]
    assert sequences == sorted(a["sequence"] for a in accepted)
    assert {r["id"] for r in records if r["type"] == INCIDENT_TYPE} == {
        *incidents,
        accepted[-1]["incident"],
    }
    assert [r["type"] for r in records].count(ALERT_TYPE) == 1


@pytest.fixture
def gw3(p3: Settings, shared_server: SharedServer) -> Iterator[Gateway]:
    """A gateway of three partitions, with a short heartbeat, and the app itself."""
    app = create_app(p3)
    app.state.stream_options = StreamOptions(heartbeat=HEARTBEAT)
    with shared_server.mounted(app) as url:
        yield Gateway(app, url)


def test_the_stream_merges_the_partitions_and_resumes_each_where_it_was(gw3: Gateway) -> None:
    """A stream sends the events of every partition once, each incident's in order, with
    ids that are positions; resuming from one sends every later event once, live ones too;
    a bare sequence is not a position here (400)."""
    incidents = ids_in_each_partition("streamed")
    with admin_client(gw3.url, timeout=10) as admin:
        before = publish(admin, *(event(imincidentid=i) for i in incidents))
        with gw3.stream(headers={"Last-Event-ID": "0.0.0"}) as everything:
            first = everything.events(len(before))
            assert sorted(m.body["id"] for m in first) == sorted(a["id"] for a in before)
            assert all(m.id is not None and m.id.count(".") == 2 for m in first)
            with gw3.stream(headers={"Last-Event-ID": first[1].id or ""}) as resumed:
                notes = (event("im.incident.note", imincidentid=i) for i in incidents)
                later = publish(admin, *notes)
                rest = resumed.events(len(first) - 2 + len(later))
                live = everything.events(len(later))
        bare = admin.get("/v1/stream", headers={"Last-Event-ID": "12"})
        assert_problem(bare, 400, "invalid-request")
    assert [m.body["id"] for m in rest[: len(first) - 2]] == [m.body["id"] for m in first[2:]]
    assert sorted(m.body["id"] for m in rest[len(first) - 2 :]) == sorted(a["id"] for a in later)
    assert sorted(m.body["id"] for m in live) == sorted(a["id"] for a in later)
    for incident in incidents:
        mine = [m.event for m in first + live if m.body.get("imincidentid") == incident]
        assert mine == ["im.incident.declare", "im.incident.note"]


def _wait_calls(port: int) -> int:
    with redis.Redis(port=port) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.slow
def test_on_a_cluster_each_partitions_events_wait_for_the_replicas_of_its_own_primary(
    cluster: EmbeddedCluster,
) -> None:
    """With INCIDENTS_MIN_REPLICAS=1 on a Redis Cluster, the events of each partition are
    stored on the primary of its slot and WAIT is asked of that primary (whose connection
    wrote them), which its replica confirms: no event is refused as short of replicas."""
    layout = partitions(3, True)
    incidents = ids_in_each_partition("waited", 1)
    drafts = [Draft(CloudEvent.from_dict(event(imincidentid=i)), "tester") for i in incidents]
    primaries = cluster.primaries()
    before = {p.port: _wait_calls(p.port) for p in primaries}

    async def run() -> list[list[Any] | Exception]:
        client = connect_async(cluster.url)
        store = EventStore(client, min_replicas=1, replica_timeout_ms=5000, layout=layout)
        try:
            return list(await store.accept_each([[d] for d in drafts], datetime.now(UTC)))
        finally:
            await client.aclose()

    answers = asyncio.run(run())
    assert all(isinstance(a, list) for a in answers), answers
    holders = set()
    for incident in incidents:
        space = layout.of_incident(incident)
        holder = next(p for p in primaries if _holds(p.port, space.SEQUENCE))
        holders.add(holder.port)
    for primary in primaries:
        asked = _wait_calls(primary.port) - before[primary.port]
        assert (asked > 0) == (primary.port in holders), (primary.port, asked, holders)


def _holds(port: int, key: str) -> bool:
    with redis.Redis(port=port) as client:
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        return int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) > 0


def test_a_resume_older_than_one_partitions_stream_says_so_and_sends_the_rest(
    gw3: Gateway, redis_client: redis.Redis
) -> None:
    """A position older than what one partition's stream retains starts with stream.missed
    naming that partition (its id where the stream resumes); every retained event follows,
    the other partitions' whole."""
    incidents = ids_in_each_partition("trimmed", 3)
    with admin_client(gw3.url, timeout=10) as admin:
        accepted = publish(admin, *(event(imincidentid=i) for i in incidents))
    trimmed = LAYOUT.spaces[1]
    redis_client.xtrim(trimmed.OUTBOX, maxlen=1, approximate=False)
    kept = [a for a in accepted if LAYOUT.of_sequence(a["sequence"]) is not trimmed]
    last_of_1 = max(a["sequence"] for a in accepted if LAYOUT.of_sequence(a["sequence"]) is trimmed)
    with gw3.stream(headers={"Last-Event-ID": "0.0.0"}) as stream:
        missed, *rest = stream.events(1 + len(kept) + 1)
    assert missed.event == "stream.missed" and "partition 1" in missed.body["detail"]
    assert missed.body["last_event_id"] == "0.0.0"
    resumed = Mark.parse(missed.body["resumes_after"], 3)
    assert missed.id == missed.body["resumes_after"]
    assert resumed.sequences[0] == resumed.sequences[2] == 0
    assert resumed.sequences[1] == last_of_1 - 3
    assert sorted(m.body["id"] for m in rest) == sorted(
        [a["id"] for a in kept] + [a["id"] for a in accepted if a["sequence"] == last_of_1]
    )


@pytest.mark.slow
def test_on_a_cluster_events_are_stored_read_and_listed_across_its_primaries(
    cluster: EmbeddedCluster, p3: Settings, redis_url: str
) -> None:
    """On a Redis Cluster of three primaries, declares (with and without ids), notes, an
    alert declaring an incident and a retried batch are stored, read back and listed as on
    one Redis; the cross-partition alert is the same 422."""
    settings = p3.replace(redis_url=cluster.url, queue_redis_url=redis_url)
    incidents = ids_in_each_partition("clustered")
    with cluster_names(), admin_gateway(settings) as client:
        batch = [event(imincidentid=i) for i in incidents] + [event() for _ in range(3)]
        first = publish(client, *batch)
        again = client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
        assert again.status_code == 200, again.text
        publish(client, *(event("im.incident.note", imincidentid=i) for i in incidents))
        declared = publish(client, alert(key_in(2, "cluster"), "SEV1"))[0]["incident"]
        listed = [i["id"] for page in _walk(client, "/v1/incidents", "incidents") for i in page]
        assert sorted(listed) == sorted({a["incident"] for a in first} | {declared})
        for incident in incidents:
            timeline = client.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]
            assert [t["type"] for t in timeline] == ["im.incident.declare", "im.incident.note"]
        for sent, got in zip(batch, first, strict=True):
            assert client.get(f"/v1/events/{sent['id']}").json()["sequence"] == got["sequence"]
        r = post(client, alert(key_in(1, "cross"), imincidentid=incidents[0]))
        assert_problem(r, 422, "cross-partition")
