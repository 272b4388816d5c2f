"""``incidents export`` and ``incidents import``: a gateway's Redis written out as CloudEvents
JSON Lines and read back into an empty one, where everything reads back the same."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from incidents.archive.records import parse_line
from incidents.cli.main import main
from incidents.settings import Settings
from incidents.store import keys
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import (
    admin_gateway,
    event,
    post,
    running_redis,
    text,
)


def build_history(client: httpx.Client) -> list[str]:
    """Incidents open and closed, notes, a role, alerts (one declaring an incident, one
    resolved); the ids of the events sent."""
    first = post(client, event(data={"title": "API down", "severity": "SEV1", "service": "api"}))
    incident = first.json()["accepted"][0]["incident"]
    sent = [first.json()["accepted"][0]["id"]]
    for body in (
        event("im.incident.note", imincidentid=incident),
        event("im.incident.role_assign", imincidentid=incident),
        event(imincidentid="INC-40"),
        event("im.incident.resolve", imincidentid="INC-40"),
        event("im.incident.close", imincidentid="INC-40"),
        event(
            "im.alert.trigger", {"summary": "db on fire", "severity": "SEV1"}, imcorrelationkey="db"
        ),
        event("im.alert.trigger", {"summary": "disk", "severity": "SEV4"}, imcorrelationkey="disk"),
        event("im.alert.resolve", {}, imcorrelationkey="disk"),
    ):
        sent.append(publish(client, body)[0]["id"])
    return sent


def everything(client: httpx.Client, event_ids: list[str]) -> dict[str, Any]:
    """What the API shows: every incident, its timeline, every alert and every event."""
    incidents = client.get("/v1/incidents").json()["incidents"]
    shown: dict[str, Any] = {"incidents": incidents, "alerts": client.get("/v1/alerts").json()}
    for found in incidents:
        shown[found["id"]] = client.get(f"/v1/incidents/{found['id']}").json()
        shown[found["id"] + "/timeline"] = client.get(
            f"/v1/incidents/{found['id']}/timeline"
        ).json()
    for event_id in event_ids:
        shown[event_id] = client.get(f"/v1/events/{event_id}").json()
    return shown


def run(argv: list[str], redis_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv, environ={"INCIDENTS_REDIS_URL": redis_url}) == 0
    return capsys.readouterr().out


def test_an_export_imported_into_an_empty_redis_reads_back_the_same(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    rx: Receiver,
    workers: Workers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every incident, timeline, alert and event reads back equal from the new Redis, which
    fans nothing out again and goes on with sequences and incident ids past the imported."""
    subscribe(client, rx, "/hook")
    sent = build_history(client)
    workers.run_until(lambda: len(rx.at("/hook")) >= len(sent) - 1)  # the ignored ack: none
    before = everything(client, sent)
    exported = tmp_path / "backup.jsonl.gz"
    run(["export", "--output", str(exported)], redis_url, capsys)

    with running_redis(tmp_path / "other", appendonly=False) as other:
        report = run(["import", str(exported)], other.url, capsys)
        assert f"events {len(sent)}," in report and "duplicates 0" in report
        moved = settings.replace(redis_url=other.url)
        with (
            admin_gateway(moved) as restored,
        ):
            assert everything(restored, sent) == before
            newer = post(restored, event(data={"title": "n", "severity": "SEV3", "service": "s"}))
            accepted = newer.json()["accepted"][0]
            highest = max(int(i["id"].removeprefix("INC-")) for i in before["incidents"])
            assert accepted["sequence"] > max(before[i]["sequence"] for i in sent)
            assert int(accepted["incident"].removeprefix("INC-")) > highest
        fresh = redis.Redis.from_url(other.url)
        assert fresh.xlen(keys.OUTBOX) == 1  # only the new event: nothing imported fans out
        again = run(["import", str(exported)], other.url, capsys)
        assert "events 0," in again and f"duplicates {len(sent)}" in again
        fresh.close()


def test_the_export_is_cloudevents_json_lines_with_the_gateway_attributes(
    client: httpx.Client, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each line is a structured CloudEvent; accepted events carry imsequence, imingestedat
    and imprincipal; incident and alert documents follow as im.gateway.* events."""
    publish(client, event(imincidentid="INC-3"), event("im.incident.note", imincidentid="INC-3"))
    out = tmp_path / "out.jsonl"
    run(["export", "--output", str(out)], redis_url, capsys)

    lines = out.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["type"] for r in records] == [
        "im.incident.declare",
        "im.incident.note",
        "im.gateway.incident",
    ]
    assert [r["imsequence"] for r in records[:2]] == [1, 2]
    assert all(re.fullmatch(r"[a-z0-9]+", name) for r in records for name in r if name != "data")
    assert records[0]["imprincipal"] and records[0]["imingestedat"]
    assert records[2]["data"]["incident"]["id"] == "INC-3" and records[2]["imversion"] == 2
    assert all(parse_line(line, n) for n, line in enumerate(lines, 1))


def test_an_export_can_be_narrowed_to_an_incident_and_a_time_span(
    client: httpx.Client, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--incident`` exports that incident and its timeline; ``--since`` only later events."""
    publish(client, event(imincidentid="INC-1"), event(imincidentid="INC-2"))
    out = tmp_path / "one.jsonl.gz"
    run(["export", "--incident", "INC-2", "--output", str(out)], redis_url, capsys)
    with gzip.open(out) as lines:
        records = [json.loads(line) for line in lines]
    assert [(r["type"], r.get("imincidentid")) for r in records] == [
        ("im.incident.declare", "INC-2"),
        ("im.gateway.incident", None),
    ]
    run(["export", "--since", "2999-01-01", "--output", str(out)], redis_url, capsys)
    with gzip.open(out) as lines:
        assert [json.loads(line)["type"] for line in lines] == ["im.gateway.incident"] * 2


def test_import_with_deliver_fans_the_events_out(
    client: httpx.Client,
    settings: Settings,
    redis_url: str,
    redis_client: redis.Redis,
    rx: Receiver,
    workers: Workers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--deliver`` queues the imported events for fan-out to the subscriptions."""
    sent = publish(client, event(imincidentid="INC-5"))
    out = tmp_path / "out.jsonl"
    run(["export", "--output", str(out)], redis_url, capsys)
    for key in redis_client.keys(keys.PREFIX + "*"):
        if not text(key).startswith(keys.PREFIX + "sub"):
            redis_client.delete(key)
    subscribe(client, rx, "/hook")

    run(["import", "--deliver", str(out)], redis_url, capsys)

    workers.run_until(lambda: len(rx.at("/hook")) == 1)
    assert rx.at("/hook")[0].event["id"] == sent[0]["id"]


def test_a_bad_line_is_named_with_its_file_and_number(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import stops at a line that is not a record, naming the file and the line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"specversion": "1.0", "id": "x", "source": "/s", "type": "t"}\nnot json\n')
    assert main(["import", str(bad)], environ={"INCIDENTS_REDIS_URL": redis_url}) == 1
    assert re.search(
        r"bad\.jsonl: line 1: .*lacks valid gateway attributes", capsys.readouterr().err
    )
