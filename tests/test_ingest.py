"""POST /v1/events: what is accepted, in each HTTP mode, and what it answers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import redis
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from incidents.store.events import stored_event
from tests.support import STRUCTURED, event, kept_event, post, stored_event_count

BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def test_structured_event_is_accepted_and_stored_before_the_answer(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """A valid structured event gets 202 naming its id, and is already in Redis."""
    ev = event("im.incident.declare")
    r = post(client, ev)
    assert r.status_code == 202, r.text
    accepted = r.json()["accepted"]
    assert [a["id"] for a in accepted] == [ev["id"]]
    stored = stored_event(kept_event(redis_client, accepted[0]["sequence"]))
    assert stored.sequence == accepted[0]["sequence"]
    assert stored.event.id == ev["id"]
    assert stored.event.data == ev["data"]
    assert abs(stored.ingested_at.timestamp() - time.time()) < 600


def test_stored_event_leaves_out_what_it_can_and_reads_back_whole(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """An event is stored without an empty ``meta`` or its ``specversion`` and reads back whole."""
    ev = event("im.incident.declare")
    accepted = post(client, ev).json()["accepted"][0]
    raw = json.loads(kept_event(redis_client, accepted["sequence"]))
    assert len(raw) == 4 and "specversion" not in raw[3]  # no meta after the event
    assert isinstance(raw[1], int) and raw[3]["I"] == ev["id"] and "id" not in raw[3]
    read = client.get(f"/v1/events/{ev['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["meta"] == {}
    assert list(read.json()["event"])[:2] == ["specversion", "id"]
    assert read.json()["event"]["specversion"] == "1.0"
    assert read.json()["principal"]
    assert read.json()["sequence"] == accepted["sequence"]
    ingested = datetime.fromisoformat(read.json()["ingested_at"])
    since_epoch = ingested - datetime(1970, 1, 1, tzinfo=UTC)
    assert ingested.tzinfo is not None and since_epoch // timedelta(microseconds=1) == raw[1]


def test_declare_without_incident_id_gets_one_assigned(client: httpx.Client) -> None:
    """A declare with no imincidentid is given INC-<n>, named in the 202 and on the event."""
    first = post(client, event("im.incident.declare")).json()["accepted"][0]
    second = post(client, event("im.incident.declare")).json()["accepted"][0]
    assert first["incident"].startswith("INC-") and second["incident"].startswith("INC-")
    assert first["incident"] != second["incident"]
    stored = client.get(f"/v1/events/{first['id']}").json()
    assert stored["event"]["imincidentid"] == first["incident"]


def test_declare_keeps_the_incident_id_it_carries(client: httpx.Client) -> None:
    """A declare that names its incident keeps that id."""
    r = post(client, event("im.incident.declare", imincidentid="SEC-42"))
    assert r.json()["accepted"][0]["incident"] == "SEC-42"


def test_duplicate_source_and_id_answers_200_and_is_stored_once(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Repeating (source, id) answers 200 with the first sequence and adds nothing."""
    ev = event("im.incident.declare")
    first = post(client, ev)
    again = post(client, ev)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["accepted"][0]["sequence"] == first.json()["accepted"][0]["sequence"]
    assert again.json()["accepted"][0]["duplicate"] is True
    assert again.json()["accepted"][0]["incident"] == first.json()["accepted"][0]["incident"]
    assert redis_client.xlen("incidents:outbox") == 1
    assert stored_event_count(redis_client) == 1


def test_same_id_from_another_source_is_a_different_event(client: httpx.Client) -> None:
    """Deduplication is on (source, id), not id alone."""
    ev = event("im.incident.declare")
    assert post(client, ev).status_code == 202
    assert post(client, {**ev, "source": "/elsewhere"}).status_code == 202
    both = client.get(f"/v1/events/{ev['id']}")
    assert both.status_code == 400 and "source" in both.json()["detail"]
    one = client.get(f"/v1/events/{ev['id']}", params={"source": "/elsewhere"})
    assert one.status_code == 200 and one.json()["event"]["source"] == "/elsewhere"


def test_events_are_listed_per_incident_in_acceptance_order(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """An incident's stored events come back in the order they were accepted."""
    inc = post(client, event("im.incident.declare")).json()["accepted"][0]["incident"]
    ids = []
    for n in range(5):
        ev = event("im.incident.note", {"text": f"note {n}"}, imincidentid=inc)
        ids.append(ev["id"])
        assert post(client, ev).status_code == 202
    members = cast(list[bytes], redis_client.zrange(f"incidents:timeline:{{{inc}}}", 0, -1))
    seqs = [int(s) for s in members]
    assert seqs == sorted(seqs) and len(seqs) == 6
    events = [stored_event(kept_event(redis_client, s)) for s in seqs[1:]]
    assert [e.event.id for e in events] == ids


def test_batch_is_accepted_whole(client: httpx.Client) -> None:
    """A valid batch gets 202 naming every event in order."""
    batch = [event("im.incident.declare") for _ in range(3)]
    r = post(client, batch, BATCH)
    assert r.status_code == 202, r.text
    assert r.json()["mode"] == "batch"
    assert [a["id"] for a in r.json()["accepted"]] == [e["id"] for e in batch]


def test_batch_with_a_repeat_inside_stores_it_once(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """The same event twice in one batch is stored once and reported as a duplicate."""
    ev = event("im.incident.declare")
    r = post(client, [ev, ev], BATCH)
    assert r.status_code == 202
    first, second = r.json()["accepted"]
    assert first["sequence"] == second["sequence"] and second["duplicate"] is True
    assert redis_client.xlen("incidents:outbox") == 1


def test_empty_batch_is_accepted_with_nothing_stored(client: httpx.Client) -> None:
    """An empty batch (allowed by the spec) stores nothing."""
    r = post(client, [], BATCH)
    assert r.status_code == 202 and r.json()["accepted"] == []


def test_binary_mode_reads_percent_encoded_headers(client: httpx.Client) -> None:
    """Binary mode takes attributes from ce- headers, percent-decoded, and data from the body."""
    r = client.post(
        "/v1/events",
        content=json.dumps({"title": "Café down", "severity": "sev-2", "service": "café"}),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "ce-specversion": "1.0",
            "ce-id": "bin-1",
            "ce-source": "/tests",
            "ce-type": "im.incident.declare",
            "ce-subject": "caf%C3%A9%20%25",
            "ce-imactor": "alice",
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["mode"] == "binary"
    stored = client.get("/v1/events/bin-1").json()["event"]
    assert stored["subject"] == "café %"
    assert stored["datacontenttype"] == "application/json; charset=utf-8"
    assert stored["imactor"] == "alice"
    assert stored["data"]["service"] == "café"


def test_ce_headers_do_not_override_structured_mode(client: httpx.Client) -> None:
    """With a structured Content-Type, ce- headers are ignored: the body is the event."""
    ev = event("im.incident.declare")
    r = client.post(
        "/v1/events",
        content=json.dumps(ev),
        headers={**STRUCTURED, "ce-id": "other", "ce-type": "nope"},
    )
    assert r.status_code == 202 and r.json()["accepted"][0]["id"] == ev["id"]


def test_cloudevents_sdk_structured_event_is_accepted(client: httpx.Client) -> None:
    """The cloudevents SDK, as an independent client, sends a structured event we accept."""
    sdk_event = SdkEvent(
        attributes={"type": "im.incident.declare", "source": "/sdk", "id": "sdk-s-1"},
        data={"title": "From the SDK", "severity": "P3", "service": "api"},
    )
    message = ce_http.to_structured_event(sdk_event)
    r = client.post("/v1/events", content=message.body, headers=message.headers)
    assert r.status_code == 202, r.text
    assert r.json()["mode"] == "structured"
    assert client.get("/v1/events/sdk-s-1").json()["event"]["source"] == "/sdk"


def test_cloudevents_sdk_binary_event_is_accepted(client: httpx.Client) -> None:
    """The cloudevents SDK's binary mode (with its time header) is accepted."""
    assert post(client, event("im.incident.declare", imincidentid="INC-9")).status_code == 202
    sdk_event = SdkEvent(
        attributes={
            "type": "im.incident.note",
            "source": "/sdk",
            "id": "sdk-b-1",
            "imincidentid": "INC-9",
            "subject": "a note with spaces & ünïcode",
            "datacontenttype": "application/json",
        },
        data={"text": "from the SDK"},
    )
    message = ce_http.to_binary_event(sdk_event)
    assert "ce-id" in {k.lower() for k in message.headers}
    r = client.post("/v1/events", content=message.body, headers=message.headers)
    assert r.status_code == 202, r.text
    stored = client.get("/v1/events/sdk-b-1").json()["event"]
    assert stored["subject"] == "a note with spaces & ünïcode"
    assert stored["data"] == {"text": "from the SDK"}
