"""Incident context on every event: the gateway stamps ``imseverity``, ``imstatus`` and
``imservice`` at acceptance, from the incident (or alert) after the event; producers may not
set them; filters, deliveries, reads and replays see them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from incidents.cli.main import main
from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.model.filters import parse_filters
from incidents.settings import Settings
from incidents.store.events import EventStore
from incidents.store.redis import connect_async
from tests.delivery_support import Receiver, Workers, publish
from tests.support import ADMIN_TOKEN, assert_problem, event, pointers, post
from tests.test_adapters import fixture
from tests.test_group_commit import script_calls
from tests.test_hot_incident import ADMIN, INC, ingestor_for, on, redis_url_of

CONTEXT = ("imseverity", "imstatus", "imservice")


def context_of(client: httpx.Client, event_id: str) -> dict[str, Any]:
    """The context attributes of a stored event, as ``GET /v1/events/{id}`` shows them."""
    r = client.get(f"/v1/events/{event_id}")
    assert r.status_code == 200, r.text
    shown: dict[str, Any] = r.json()["event"]
    return {k: shown[k] for k in CONTEXT if k in shown}


def sent(client: httpx.Client, body: dict[str, Any]) -> str:
    r = post(client, body)
    assert r.status_code == 202, r.text
    return str(body["id"])


def test_each_incident_event_carries_the_incident_state_after_it(client: httpx.Client) -> None:
    """A declare, an ack, a severity change, a note and a resolve each carry the incident's
    severity, status and service as they were right after that event."""
    declare = event(imincidentid="INC-CTX", data={"title": "t", "severity": "sev-3",
                                                   "service": "payments"})  # fmt: skip
    steps = [
        declare,
        event("im.incident.ack", imincidentid="INC-CTX"),
        event(
            "im.incident.state_change", {"severity": "P1", "reason": "r"}, imincidentid="INC-CTX"
        ),
        event("im.incident.mitigate", imincidentid="INC-CTX"),
        event("im.incident.note", imincidentid="INC-CTX"),
        event("im.incident.resolve", imincidentid="INC-CTX"),
    ]
    seen = [context_of(client, sent(client, s)) for s in steps]
    expected = [
        ("SEV3", "open"), ("SEV3", "open"), ("SEV1", "open"),
        ("SEV1", "mitigated"), ("SEV1", "mitigated"), ("SEV1", "resolved"),
    ]  # fmt: skip
    assert [(c["imseverity"], c["imstatus"]) for c in seen] == expected
    assert {c["imservice"] for c in seen} == {"payments"}


@pytest.mark.parametrize(("name", "value"), [("imseverity", "SEV1"), ("imstatus", "open"),
                                             ("imservice", "payments")])  # fmt: skip
def test_producers_may_not_set_the_context_attributes(
    client: httpx.Client, name: str, value: str
) -> None:
    """Setting imseverity, imstatus or imservice, even to a valid value, is a 400 pointing at
    the attribute, and nothing is stored."""
    body = event(**{name: value})
    problem = assert_problem(post(client, body), 400, "invalid-cloudevent")
    assert pointers(problem) == [f"/{name}"]
    assert client.get(f"/v1/events/{body['id']}").status_code == 404


def test_alert_events_carry_the_alert_severity_status_and_service(client: httpx.Client) -> None:
    """Alertmanager alerts carry their severity, their status and the service their labels
    name; the resolve carries the resolved status."""
    firing = client.post("/v1/ingest/alertmanager", json=fixture("alertmanager_v4_firing.json"))
    assert firing.status_code == 202, firing.text
    first, second = (context_of(client, a["id"]) for a in firing.json()["accepted"])
    assert first == {"imseverity": "SEV1", "imstatus": "firing", "imservice": "checkout"}
    assert second == {"imseverity": "SEV3", "imstatus": "firing", "imservice": "checkout"}
    resolved = client.post("/v1/ingest/alertmanager", json=fixture("alertmanager_v4_resolved.json"))
    assert resolved.status_code == 202, resolved.text
    contexts = [context_of(client, a["id"]) for a in resolved.json()["accepted"]]
    assert {c["imstatus"] for c in contexts} == {"resolved"}


def test_an_alert_without_a_service_label_carries_no_imservice(client: httpx.Client) -> None:
    """A PagerDuty trigger names no service: severity and status only."""
    r = client.post("/v2/enqueue", json={**fixture("pagerduty_trigger.json"),
                                          "routing_key": ADMIN_TOKEN})  # fmt: skip
    assert r.status_code == 202, r.text
    alert = client.get(f"/v1/alerts/{r.json()['dedup_key']}").json()
    assert context_of(client, alert["last_event"]) == {"imseverity": "SEV1", "imstatus": "firing"}


def test_a_hot_incident_group_stamps_each_event_with_the_state_after_it(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Requests for one incident planned together in one script call each carry the state
    after their own event, not the state after the whole group."""
    requests = [
        [on("im.incident.note")],
        [on("im.incident.state_change", {"severity": "SEV1", "reason": "worse"})],
        [on("im.incident.mitigate"), on("im.incident.note")],
        [on("im.incident.state_change", {"status": "open", "reason": "regressed"})],
        [on("im.incident.resolve")],
    ]

    async def run() -> tuple[int, list[StoredEvent]]:
        client = connect_async(redis_url_of(settings))
        store = EventStore(client)
        ingestor = ingestor_for(settings, store)
        try:
            await ingestor.accept(ingestor.check([event(imincidentid=INC)], batch=False), ADMIN)
            checked = [ingestor.check(r, batch=True) for r in requests]
            before = script_calls(redis_client)
            await asyncio.gather(*(ingestor.accept(events, ADMIN) for events in checked))
            return script_calls(redis_client) - before, await store.timeline(INC)
        finally:
            await client.aclose()

    calls, timeline = asyncio.run(run())
    assert calls < len(requests)  # they were planned and stored together
    stamps = [(s.event.get("imseverity"), s.event.get("imstatus")) for s in timeline]
    assert stamps == [
        ("SEV2", "open"),  # the declare (sample data: SEV2, service checkout)
        ("SEV2", "open"),
        ("SEV1", "open"),
        ("SEV1", "mitigated"),
        ("SEV1", "mitigated"),
        ("SEV1", "open"),
        ("SEV1", "resolved"),
    ]
    assert {s.event.get("imservice") for s in timeline} == {"checkout"}


def stamped(**attributes: str) -> CloudEvent:
    base = {"specversion": "1.0", "id": "1", "source": "/s", "type": "im.incident.ack"}
    return CloudEvent({**base, **attributes})


@pytest.mark.parametrize(
    ("expression", "matched"),
    [
        ({"exact": {"imseverity": "SEV1"}}, True),
        ({"prefix": {"imservice": "pay"}}, True),
        ({"suffix": {"imservice": "ments"}}, True),
        ({"any": [{"exact": {"imstatus": "resolved"}}, {"exact": {"imseverity": "SEV2"}}]}, False),
        ({"all": [{"exact": {"imstatus": "open"}}, {"prefix": {"imseverity": "SEV"}}]}, True),
        ({"not": {"exact": {"imseverity": "SEV1"}}}, False),
    ],
)
def test_every_filter_dialect_sees_the_context(expression: dict[str, Any], matched: bool) -> None:
    """exact, prefix, suffix, any, all and not all read the stamped attributes."""
    compiled, problems = parse_filters([expression])
    assert problems == []
    event_ = stamped(imseverity="SEV1", imstatus="open", imservice="payments")
    assert compiled.matches(event_.attributes) is matched


def test_the_subscribe_help_example_routes_sev1_incidents_end_to_end(
    gateway: str,
    client: httpx.Client,
    rx: Receiver,
    workers: Workers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`incidents subscribe --filter '{"exact": {"imseverity": "SEV1"}}'` (the help's
    example) gets every event of a SEV1 incident, an ack and a note included, and nothing of a
    SEV2 one, each carrying its context; a replay sends them again with it."""
    code = main(
        ["subscribe", "--sink", rx.sink("/sev1"), "--filter", '{"exact": {"imseverity": "SEV1"}}',
         "--url", gateway, "--token", ADMIN_TOKEN],
        environ={},
    )  # fmt: skip
    assert code == 0
    created = json.loads(capsys.readouterr().out)
    rx.secrets["/sev1"] = created["secret"]
    sev1 = {"title": "Payments down", "severity": "SEV1", "service": "payments"}
    sev2 = {"title": "Search slow", "severity": "SEV2", "service": "search"}
    publish(
        client,
        event(data=sev1, imincidentid="INC-P1"),
        event(data=sev2, imincidentid="INC-S2"),
        event("im.incident.ack", imincidentid="INC-S2"),
        event("im.incident.ack", imincidentid="INC-P1"),
        event("im.incident.note", imincidentid="INC-P1"),
    )
    workers.run_until(lambda: len(rx.at("/sev1")) >= 3)
    got = [r.event for r in rx.at("/sev1")]
    assert all(r.verified for r in rx.at("/sev1"))
    assert [e["type"] for e in got] == [
        "im.incident.declare", "im.incident.ack", "im.incident.note"
    ]  # fmt: skip
    assert {(e["imincidentid"], e["imseverity"], e["imservice"]) for e in got} == {
        ("INC-P1", "SEV1", "payments")
    }
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = client.post(f"/v1/subscriptions/{created['id']}/replay", json={"since": since})
    assert r.status_code in (200, 202), r.text
    workers.run_until(lambda: len(rx.at("/sev1")) >= 6)
    replayed = [r.event for r in rx.at("/sev1")[3:]]
    assert [e["imseverity"] for e in replayed] == ["SEV1"] * 3


def test_a_binary_mode_context_header_is_refused(client: httpx.Client) -> None:
    """``ce-imseverity`` in binary mode is refused like the attribute in structured mode."""
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "binary-ctx",
        "ce-source": "/tests",
        "ce-type": "im.incident.declare",
        "ce-imseverity": "SEV1",
    }
    body = json.dumps({"title": "t", "severity": "SEV1", "service": "s"})
    problem = assert_problem(post(client, body, headers), 400, "invalid-cloudevent")
    assert pointers(problem) == ["/imseverity"]
