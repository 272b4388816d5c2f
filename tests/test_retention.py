"""Retention: the sweeper removes what is past its time, from time-ordered indexes, and never
what is still needed (an open incident, an undelivered event, an unrouted one)."""

from __future__ import annotations

import gzip
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from incidents.archive.daily import Archive, ArchiveError
from incidents.archive.records import DELIVERY_TYPE, Line, parse_line
from incidents.archive.restore import Restorer, read_files
from incidents.cli.runner import dev_environment
from incidents.connectors.channel_base import ChannelState
from incidents.retention.event_removal import EVENTS_PER_STEP
from incidents.retention.sweeper import Sweeper
from incidents.settings import Settings
from incidents.store import keys
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import event, post, text

DAY = 86400.0


def sweep(
    settings: Settings, client: redis.Redis, at: float, archive: Archive | None = None
) -> Counter[str]:
    """Sweep, on a clock that reads ``at``, until nothing more is due; what was removed."""
    sweeper = Sweeper(client, settings, lambda: at, archive)
    total: Counter[str] = Counter()
    for _ in range(100):
        removed = sweeper.step()
        if not removed:
            return total
        total.update(removed)
    raise AssertionError(f"the sweeper still removes after 100 steps: {removed}")


def quiet_alert(key: str) -> dict[str, Any]:
    """An alert trigger low enough that it declares no incident: an event of no incident."""
    return event("im.alert.trigger", {"summary": key, "severity": "SEV4"}, imcorrelationkey=key)


def routed(workers: Workers) -> None:
    """Run the workers until nothing is left to route or deliver."""
    workers.run_until(lambda: not workers.scheduler.pending())


def key_names(client: redis.Redis, pattern: str) -> list[str]:
    return sorted(text(k) for k in client.keys(pattern))


def test_delivered_events_past_retention_go_with_their_dedup_keys_and_records(
    client: httpx.Client,
    settings: Settings,
    redis_client: redis.Redis,
    rx: Receiver,
    workers: Workers,
) -> None:
    """Delivered events older than the retention are removed with their dedup keys, id index
    entries and delivery records; the same event sent again is then accepted as new."""
    subscribe(client, rx, "/hook", types=["im.alert.*"])
    sent = [quiet_alert(f"disk-{n}") for n in range(3)]
    publish(client, *sent)
    workers.run_until(lambda: len(rx.at("/hook")) == 3)

    assert sweep(settings, redis_client, time.time() + 29 * DAY) == Counter()
    removed = sweep(settings, redis_client, time.time() + 31 * DAY)

    assert (removed["event"], removed["dedup"], removed["delivery"]) == (3, 3, 3)
    for pattern in ("events:*", "event-ids:*", "delivery:*"):
        assert key_names(redis_client, keys.PREFIX + pattern) == [], pattern
    assert key_names(redis_client, keys.PREFIX + "deliveries:*") == []
    assert redis_client.zcard(keys.DELIVERY_BUCKETS) == 0
    assert client.get(f"/v1/events/{sent[0]['id']}").status_code == 404
    again = post(client, sent[0])
    assert again.status_code == 202 and "duplicate" not in again.json()["accepted"][0]


def test_an_unrouted_event_and_an_undelivered_one_are_kept(
    client: httpx.Client,
    settings: Settings,
    redis_client: redis.Redis,
    rx: Receiver,
    workers: Workers,
) -> None:
    """An event still in a lane (its sink failing) and one not routed yet outlive the
    retention, with their dedup keys and delivery records, until delivery is done with them."""
    subscribe(client, rx, "/down", types=["im.alert.*"])
    rx.scripts["/down"] = [(500, {})] * 2
    (failing,) = publish(client, quiet_alert("failing"))
    workers.run_until(lambda: len(rx.at("/down")) >= 1)
    (unrouted,) = publish(client, quiet_alert("unrouted"))

    removed = sweep(settings, redis_client, time.time() + 31 * DAY)

    assert removed["event"] == removed["delivery"] == 0
    for accepted in (failing, unrouted):
        assert client.get(f"/v1/events/{accepted['id']}").status_code == 200
    assert redis_client.hlen(keys.deliveries(failing["sequence"] // keys.DELIVERY_BUCKET)) == 1
    assert redis_client.xlen(keys.OUTBOX) >= 1  # the unrouted entry stays

    workers.run_until(lambda: len(rx.at("/down")) >= 4)  # two failures, then both delivered
    removed = sweep(settings, redis_client, time.time() + 31 * DAY)
    assert (removed["event"], removed["delivery"]) == (2, 2)
    assert redis_client.xlen(keys.OUTBOX) == 0  # trimmed by age once routed


def test_an_open_incident_keeps_its_timeline_and_a_closed_one_goes_after_its_retention(
    client: httpx.Client, settings: Settings, redis_client: redis.Redis, workers: Workers
) -> None:
    """Events on an open incident's timeline stay past the event retention (only their dedup
    keys go); a closed incident goes, whole, once closed longer than the incident retention."""
    declared = post(client, event(imincidentid="INC-7")).json()["accepted"][0]
    publish(client, event("im.incident.note", imincidentid="INC-7"))
    routed(workers)
    swept = sweep(settings, redis_client, time.time() + 31 * DAY)
    assert (swept["event"], swept["dedup"]) == (0, 2)
    timeline = client.get("/v1/incidents/INC-7/timeline").json()
    assert [e["type"] for e in timeline["timeline"]] == ["im.incident.declare", "im.incident.note"]

    publish(client, event("im.incident.resolve", imincidentid="INC-7"))
    publish(client, event("im.incident.close", imincidentid="INC-7"))
    routed(workers)
    # What a connector keeps for the incident (its ticket, and the ticket's id pointing back).
    redis_client.sadd(keys.SUBSCRIPTIONS, "sub_sn")
    ticket = ChannelState("a1b2", {"number": "INC0010001"}).encoded()
    redis_client.hset(keys.channel_state("sub_sn"), mapping={"INC-7": ticket, "INC-8": ticket})
    redis_client.hset(keys.sync_records("sub_sn"), mapping={"a1b2": "INC-7", "zz": "INC-8"})
    assert sweep(settings, redis_client, time.time() + 364 * DAY)["incident"] == 0
    assert client.get("/v1/incidents/INC-7").status_code == 200

    removed = sweep(settings, redis_client, time.time() + 366 * DAY)

    assert (removed["incident"], removed["event"]) == (1, 4)
    assert client.get("/v1/incidents/INC-7").status_code == 404
    assert client.get(f"/v1/events/{declared['id']}").status_code == 404
    assert client.get("/v1/incidents").json()["incidents"] == []
    assert key_names(redis_client, "*INC-7*") == []
    assert key_names(redis_client, keys.PREFIX + "events:*") == []
    assert redis_client.hkeys(keys.channel_state("sub_sn")) == [b"INC-8"]
    assert redis_client.hkeys(keys.sync_records("sub_sn")) == [b"zz"]


def test_a_resolved_alert_goes_after_the_incident_retention_and_a_firing_one_stays(
    client: httpx.Client, settings: Settings, redis_client: redis.Redis, workers: Workers
) -> None:
    """A resolved alert is removed once resolved longer than the incident retention; one that
    still fires is never removed."""
    publish(client, quiet_alert("gone"), quiet_alert("firing"))
    publish(client, event("im.alert.resolve", {}, imcorrelationkey="gone"))
    routed(workers)

    assert sweep(settings, redis_client, time.time() + 366 * DAY)["alert"] == 1

    assert client.get("/v1/alerts/gone").status_code == 404
    assert client.get("/v1/alerts/firing").json()["status"] == "firing"
    listed = client.get("/v1/alerts").json()["alerts"]
    assert [a["key"] for a in listed] == ["firing"]


def test_attempt_log_entries_past_retention_go(
    client: httpx.Client,
    settings: Settings,
    redis_client: redis.Redis,
    rx: Receiver,
    workers: Workers,
) -> None:
    """A subscription's attempt log loses its entries older than the retention."""
    sub = subscribe(client, rx, "/hook", types=["im.alert.*"])
    publish(client, quiet_alert("a"), quiet_alert("b"))
    workers.run_until(lambda: len(rx.at("/hook")) == 2)
    assert redis_client.llen(keys.attempts(sub["id"])) == 2

    assert sweep(settings, redis_client, time.time() + 31 * DAY)["attempt"] == 2

    assert client.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["attempts"] == []


def test_what_was_removed_is_counted_in_the_metrics(
    client: httpx.Client, settings: Settings, redis_client: redis.Redis
) -> None:
    """``incidents_retention_removed_total`` counts what retention removed, by kind."""
    publish(client, quiet_alert("x"), quiet_alert("y"))
    sweep(settings, redis_client, time.time() + 31 * DAY)

    text = client.get("/metrics").text

    assert "# TYPE incidents_retention_removed_total counter" in text
    assert 'incidents_retention_removed_total{kind="event"} 0' in text  # never routed: kept
    redis_client.xgroup_create(keys.OUTBOX, keys.ROUTER_GROUP, id="$")  # routed: nobody wants them
    sweep(settings, redis_client, time.time() + 31 * DAY)
    text = client.get("/metrics").text
    assert 'incidents_retention_removed_total{kind="event"} 2' in text
    assert 'incidents_retention_removed_total{kind="dedup"} 2' in text


def test_one_worker_sweeps_at_a_time(settings: Settings, redis_client: redis.Redis) -> None:
    """While another worker holds the sweeper's lease, a sweep does nothing."""
    redis_client.set(keys.SWEEP_LOCK, "other", px=10_000)
    assert Sweeper(redis_client, settings, time.time).sweep() is None
    redis_client.delete(keys.SWEEP_LOCK)
    assert Sweeper(redis_client, settings, time.time).sweep() == Counter()
    assert not redis_client.exists(keys.SWEEP_LOCK)  # handed back


def archived(folder: Path, kind: str) -> list[Line]:
    """Every line of the archive's files of one kind, parsed, in file order."""
    found = []
    for path in sorted(folder.glob(f"{kind}-*.jsonl.gz")):
        with gzip.open(path, "rb") as lines:
            found += [parse_line(raw, n) for n, raw in enumerate(lines, 1)]
    return found


def test_what_retention_removes_is_archived_first(
    client: httpx.Client,
    settings: Settings,
    redis_client: redis.Redis,
    rx: Receiver,
    workers: Workers,
    tmp_path: Path,
) -> None:
    """With an archive, removed events go to daily gzip files of CloudEvents JSON Lines with
    the gateway's attributes, and their delivery records to files of their own."""
    subscribe(client, rx, "/hook", types=["im.alert.*"])
    sent = [quiet_alert(f"k-{n}") for n in range(2)]
    accepted = publish(client, *sent)
    workers.run_until(lambda: len(rx.at("/hook")) == 2)
    archive = Archive(tmp_path / "archive")

    removed = sweep(settings, redis_client, time.time() + 31 * DAY, archive)

    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert (tmp_path / "archive" / f"events-{day}.jsonl.gz").is_file()
    events = [line.stored for line in archived(tmp_path / "archive", "events")]
    assert [(s.event.id, s.sequence) for s in events if s] == [
        (e["id"], a["sequence"]) for e, a in zip(sent, accepted, strict=True)
    ]
    assert all(
        s is not None and s.principal and s.event.data == e["data"]
        for s, e in zip(events, sent, strict=True)
    )
    deliveries = archived(tmp_path / "archive", "deliveries")
    assert removed["delivery"] == 2
    states = [d.data["delivery"]["state"] for d in deliveries if d.data and d.kind == DELIVERY_TYPE]
    assert sorted(states) == [
        "delivered",
        "delivered",
    ]


def test_a_failing_archive_stops_removal(
    client: httpx.Client,
    settings: Settings,
    redis_client: redis.Redis,
    workers: Workers,
    tmp_path: Path,
) -> None:
    """When the archive cannot be written, nothing is removed; once it can, all is."""
    blocked = tmp_path / "archive"
    blocked.write_text("a file where the folder should be")
    publish(client, quiet_alert("a"))
    routed(workers)

    with pytest.raises(ArchiveError):
        sweep(settings, redis_client, time.time() + 31 * DAY, Archive(blocked))
    assert key_names(redis_client, keys.PREFIX + "events:*") != []

    blocked.unlink()
    assert sweep(settings, redis_client, time.time() + 31 * DAY, Archive(blocked))["event"] == 1
    assert len(archived(blocked, "events")) == 1


def test_what_retention_archived_can_be_imported_back(
    client: httpx.Client,
    settings: Settings,
    redis_client: redis.Redis,
    workers: Workers,
    tmp_path: Path,
) -> None:
    """Archive files are import files: an event and a closed incident removed by retention
    read back the same once their archive is imported."""
    publish(client, quiet_alert("a"), event(imincidentid="INC-9"))
    publish(client, event("im.incident.resolve", imincidentid="INC-9"))
    publish(client, event("im.incident.close", imincidentid="INC-9"))
    routed(workers)
    timeline = client.get("/v1/incidents/INC-9/timeline").json()
    incident = client.get("/v1/incidents/INC-9").json()
    archive = Archive(tmp_path / "archive")
    removed = sweep(settings, redis_client, time.time() + 366 * DAY, archive)
    assert (removed["incident"], removed["event"]) == (1, 4)

    counts = Restorer(redis_client).restore(read_files(sorted(archive.folder.iterdir())))

    assert (counts["events"], counts["incidents"]) == (4, 1)
    assert client.get("/v1/incidents/INC-9").json() == incident
    assert client.get("/v1/incidents/INC-9/timeline").json() == timeline


def test_dev_archives_into_its_data_folder_unless_told_otherwise(tmp_path: Path) -> None:
    """`incidents dev` sets the archive to its data folder's `archive`, unless one is set."""
    found = dev_environment({"INCIDENTS_DATA_DIR": str(tmp_path)})
    assert found["INCIDENTS_ARCHIVE_DIR"] == str(tmp_path / "archive")
    chosen = {"INCIDENTS_DATA_DIR": str(tmp_path), "INCIDENTS_ARCHIVE_DIR": "/elsewhere"}
    assert dev_environment(chosen)["INCIDENTS_ARCHIVE_DIR"] == "/elsewhere"


def test_each_step_removes_a_bounded_number(
    client: httpx.Client, settings: Settings, redis_client: redis.Redis, workers: Workers
) -> None:
    """A step removes at most EVENTS_PER_STEP events, so Redis is never held long; the next
    steps go on where it stopped."""
    publish(client, *[quiet_alert(f"k{n}") for n in range(EVENTS_PER_STEP + 50)])
    routed(workers)
    sweeper = Sweeper(redis_client, settings, lambda: time.time() + 31 * DAY)

    first, second, third = sweeper.step(), sweeper.step(), sweeper.step()

    assert (first["event"], second["event"], third["event"]) == (EVENTS_PER_STEP, 50, 0)
