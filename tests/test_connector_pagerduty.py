"""The PagerDuty channel (Events API v2): each event's action, severity and dedup_key, bodies
valid against PagerDuty's published schema, responses classified, settings validated, and the
channel run by the real Dispatcher against a server playing PagerDuty."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis

from incidents.connectors.channel_base import Message, Outcome, OutcomeKind, Request, Response
from incidents.connectors.pagerduty.channel import MAX_DEDUP_KEY, PagerDutyChannel
from incidents.model.cloudevent import CloudEvent
from incidents.settings import Settings
from incidents.subscriptions.spec import Spec
from incidents.subscriptions.subscription import new_subscription
from tests.connector_support import drive, openapi_request_validator, subscribe_format, vendor
from tests.delivery_support import FakeClock, publish
from tests.support import event

T0 = 1_800_000_000.0
SINK = "https://events.pagerduty.com/v2/enqueue"
SETTINGS = {"routing_key": "R0123456789abcdef0123456789abcdef",
            "incident_url_template": "https://console.example/incidents/{id}"}  # fmt: skip
WITH_CHANGES = {**SETTINGS, "change_events": True}
VIEW = {"id": "INC-7", "title": "Card payments failing", "severity": "SEV1", "status": "open",
        "service": "payments", "roles": {"commander": "alice", "comms": None, "scribe": None},
        "redacted": ["/summary"]}  # fmt: skip
ENQUEUE = openapi_request_validator("pagerduty-events-v2.openapi.json", "/enqueue")
CHANGE = openapi_request_validator("pagerduty-events-v2.openapi.json", "/change/enqueue")


def message(
    type_: str,
    data: Any,
    view: Mapping[str, object] | None = VIEW,
    settings: Mapping[str, object] = SETTINGS,
    **attrs: str,
) -> Message:
    spec = Spec(sink=SINK, format="pagerduty", formatsettings=settings)
    sub = new_subscription(spec, "admin", datetime.fromtimestamp(T0, UTC))
    raw = {"specversion": "1.0", "id": "e-1", "source": "/mon", "type": type_,
           "time": "2027-01-15T08:00:00+00:00", "data": data, **attrs}  # fmt: skip
    if type_.startswith("im.incident."):
        raw.setdefault("imincidentid", "INC-7")
    return Message("msg_1", sub, CloudEvent.from_dict(raw), raw.get("imincidentid"), None, T0, view)


def sent(msg: Message) -> tuple[str, dict[str, Any]]:
    """The request's path and body, the body checked against PagerDuty's schema."""
    request = PagerDutyChannel().render(msg)
    assert isinstance(request, Request), request
    body: dict[str, Any] = orjson.loads(request.body)
    path = request.url.removeprefix("https://events.pagerduty.com/v2")
    (CHANGE if path == "/change/enqueue" else ENQUEUE).validate(body)
    assert request.method == "POST" and request.headers["content-type"] == "application/json"
    return path, body


MAPPED = [
    ("im.incident.declare", {"title": "Card payments failing", "severity": "SEV1",
                             "service": "payments"}, "trigger", "critical"),
    ("im.incident.ack", {}, "acknowledge", None),
    ("im.incident.resolve", {"summary": "acquirer fixed"}, "resolve", None),
    ("im.incident.close", {}, "resolve", None),
    ("im.incident.state_change", {"status": "open", "reason": "back again"}, "trigger",
     "critical"),
    ("im.incident.state_change", {"severity": "SEV3", "reason": "contained"}, "trigger",
     "warning"),
    ("im.incident.state_change", {"severity": "SEV4", "status": "mitigated", "reason": "x"},
     "trigger", "info"),
    ("im.incident.state_change", {"status": "resolved", "reason": "fixed"}, "resolve", None),
    ("im.incident.state_change", {"status": "closed", "reason": "done"}, "resolve", None),
]  # fmt: skip


@pytest.mark.parametrize(("type_", "data", "action", "severity"), MAPPED)
def test_pagerduty_sends_each_incident_event_as_its_events_v2_action(
    type_: str, data: dict[str, Any], action: str, severity: str | None
) -> None:
    """Declare, reopen and severity changes trigger (SEV1..SEV4 as critical, error, warning,
    info), ack acknowledges, resolve and close resolve, all with dedup_key = the incident id;
    a trigger carries the incident as the owner may read it, and a link to it."""
    path, body = sent(message(type_, data))
    assert path == "/enqueue"
    assert body["event_action"] == action and body["dedup_key"] == "INC-7"
    assert body["routing_key"] == SETTINGS["routing_key"]
    if severity is None:
        assert "payload" not in body
        return
    payload = body["payload"]
    assert payload["severity"] == severity
    assert payload["summary"] == "Card payments failing" and payload["source"] == "payments"
    assert payload["custom_details"] == VIEW  # redacted as the owner reads it
    assert payload["timestamp"] == "2027-01-15T08:00:00+00:00"
    assert body["links"] == [{"href": "https://console.example/incidents/INC-7", "text": "INC-7"}]


# events PagerDuty's Events v2 has no action for
NO_ACTION = [
    ("im.incident.mitigate", {"summary": "rolled back"}),
    ("im.incident.note", {"text": "acquirer paged"}),
    ("im.incident.role_assign", {"role": "commander", "assignee": "bob"}),
    ("im.incident.state_change", {"status": "mitigated", "reason": "rolled back"}),
]


@pytest.mark.parametrize(("type_", "data"), NO_ACTION)
def test_pagerduty_sends_nothing_for_what_it_has_no_action_for_by_default(
    type_: str, data: dict[str, Any]
) -> None:
    """Without change_events, an event PagerDuty has no action for is settled as skipped with
    no request at all (DESIGN.md maps them to nothing), so their text never leaves the gateway."""
    outcome = PagerDutyChannel().render(message(type_, data))
    assert isinstance(outcome, Outcome) and outcome.kind == OutcomeKind.SKIPPED
    assert type_ in outcome.error


@pytest.mark.parametrize(("type_", "data"), NO_ACTION)
def test_pagerduty_sends_what_it_has_no_action_for_as_a_change_event(
    type_: str, data: dict[str, Any]
) -> None:
    """A mitigation, a note, a role assignment or a move to mitigated has no Events v2 action:
    with change_events on it goes to /v2/change/enqueue, which never pages nor touches the
    alert."""
    path, body = sent(message(type_, data, settings=WITH_CHANGES))
    assert path == "/change/enqueue"
    assert "event_action" not in body and "dedup_key" not in body
    assert body["payload"]["summary"].startswith("INC-7: ")
    assert body["payload"]["custom_details"]["data"] == data


@pytest.mark.parametrize(
    ("type_", "action"),
    [("im.alert.trigger", "trigger"), ("im.alert.ack", "acknowledge"),
     ("im.alert.resolve", "resolve")],
)  # fmt: skip
def test_pagerduty_sends_alerts_by_their_correlation_key(type_: str, action: str) -> None:
    """Alert events trigger, acknowledge and resolve with dedup_key = the correlation key; a
    trigger's summary and severity are the alert's own."""
    data = {"summary": "High error rate", "severity": "P2", "labels": {"env": "prod"}}
    msg = message(type_, data, view=None, imcorrelationkey="fp-1")
    _, body = sent(msg)
    assert (body["event_action"], body["dedup_key"]) == (action, "fp-1")
    if action == "trigger":
        assert body["payload"]["summary"] == "High error rate"
        assert body["payload"]["severity"] == "error"
        assert body["payload"]["custom_details"] == {"type": type_, "data": data}


def test_pagerduty_cuts_summary_and_dedup_key_to_its_limits() -> None:
    """A summary over 1024 characters is cut; a key over 255 becomes a stable 255-character
    key that two long keys never share."""
    long_title = {**VIEW, "title": "x" * 5000}
    _, body = sent(message("im.incident.declare", {"title": "t", "severity": "SEV2",
                                                    "service": "s"}, view=long_title))  # fmt: skip
    assert len(body["payload"]["summary"]) == 1024
    keys = []
    for tail in "ab":
        msg = message("im.alert.trigger", {"summary": "s", "severity": "SEV1"},
                      imcorrelationkey="k" * 300 + tail)  # fmt: skip
        keys.append(sent(msg)[1]["dedup_key"])
        assert sent(msg)[1]["dedup_key"] == keys[-1]  # the same on every render
    assert all(len(k) == MAX_DEDUP_KEY for k in keys) and keys[0] != keys[1]


def test_pagerduty_severity_mapping_can_be_overridden() -> None:
    """formatsettings.mapping.severity replaces entries of the default SEV table."""
    settings = {**SETTINGS, "mapping": {"severity": {"SEV1": "error"}}}
    msg = message("im.incident.declare", {"title": "t", "severity": "SEV1", "service": "s"},
                  settings=settings)  # fmt: skip
    assert sent(msg)[1]["payload"]["severity"] == "error"
    assert PagerDutyChannel().validate(Spec(sink=SINK, formatsettings=settings)) == []


def test_pagerduty_classifies_accepted_throttled_and_refused_events() -> None:
    """202 is delivered and keeps dedup_key as the external record with the action and
    severity sent; 429 waits its Retry-After (30 s without one); 400 fails keeping PD's
    error body."""
    channel = PagerDutyChannel()
    msg = message("im.incident.declare", {"title": "t", "severity": "SEV1", "service": "s"})
    request = channel.render(msg)
    assert isinstance(request, Request)

    def answer(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Any:
        return channel.classify(msg, request, Response(status, headers or {}, body, 3.0))

    accepted = answer(202, b'{"status":"success","dedup_key":"INC-7"}')
    assert accepted.kind == OutcomeKind.DELIVERED and accepted.state is not None
    assert accepted.state.external_id == "INC-7"
    assert accepted.state.data == {"action": "trigger", "severity": "critical"}
    busy = answer(429, headers={"retry-after": "7"})
    assert (busy.kind, busy.retry_after) == (OutcomeKind.FAILED, 7.0)
    assert answer(429).retry_after == 30.0
    refused = answer(400, b'{"status":"invalid event","errors":["routing_key is invalid"]}')
    assert refused.kind == OutcomeKind.FAILED and "routing_key is invalid" in refused.body
    assert answer(500).kind == OutcomeKind.FAILED


def test_pagerduty_settings_are_checked_at_registration() -> None:
    """A missing routing key, a sink that is not the enqueue URL, a bad mapping, an unknown
    setting and a link template without {id} are each named."""
    spec = Spec(
        sink="https://events.pagerduty.com/v2/other",
        formatsettings={"mapping": {"severity": {"SEV9": "loud"}, "status": {}},
                        "incident_url_template": "https://console.example/x", "extra": 1},
    )  # fmt: skip
    found = sorted(p.pointer for p in PagerDutyChannel().validate(spec))
    assert found == [
        "/formatsettings/extra",
        "/formatsettings/incident_url_template",
        "/formatsettings/mapping/severity/SEV9",
        "/formatsettings/mapping/status",
        "/formatsettings/routing_key",
        "/sink",
    ]
    assert PagerDutyChannel().validate(Spec(sink=SINK, formatsettings=SETTINGS)) == []
    assert PagerDutyChannel.SECRET_POINTERS == ("/routing_key", "/inbound_secret")


def test_pagerduty_through_the_dispatcher_keeps_order_and_one_dedup_key_across_retries(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Run by the real Dispatcher against a server playing PagerDuty: a 429 with Retry-After
    is waited out and the trigger retried with the same dedup_key; each incident's events
    arrive in order (trigger, change, acknowledge, resolve), every body valid."""
    accepted = (202, {"content-type": "application/json"}, b'{"status":"success"}')
    clock = FakeClock(T0)
    with vendor(accepted) as pd:
        pd.scripts["/v2/enqueue"] = [(429, {"retry-after": "2"}, b"")]
        sub_id = subscribe_format(client, redis_client, pd.url + "/v2/enqueue", "pagerduty",
                                  WITH_CHANGES, ["im.incident.*"])  # fmt: skip
        first = publish(client, event("im.incident.declare"))[0]["incident"]
        second = publish(client, event("im.incident.declare"))[0]["incident"]
        for type_ in ("im.incident.note", "im.incident.ack", "im.incident.resolve"):
            publish(client, event(type_, imincidentid=first))
        drive(settings, PagerDutyChannel(), clock, lambda: len(pd.sent) == 6)
    for found in pd.sent:
        (CHANGE if found.path == "/v2/change/enqueue" else ENQUEUE).validate(found.body)

    def about(incident: str) -> list[str]:
        return [
            s.body.get("event_action", "change")
            for s in pd.sent
            if incident in (s.body.get("dedup_key"), s.body["payload"]["custom_details"]
                            .get("incident") if "dedup_key" not in s.body else None)
        ]  # fmt: skip

    throttled = pd.sent[0].body  # the first trigger, answered 429, then sent again unchanged
    retried = [s.body for s in pd.sent[1:] if s.body.get("dedup_key") == throttled["dedup_key"]]
    assert retried[0] == throttled and throttled["event_action"] == "trigger"
    in_order = ["trigger", "change", "acknowledge", "resolve"]
    assert [a for i, a in enumerate(about(first)) if i == 0 or a != "trigger"] == in_order
    assert about(second) in (["trigger"], ["trigger", "trigger"])
    assert len(about(first)) + len(about(second)) == 6
    log = client.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["attempts"]
    assert sorted(a["outcome"] for a in log) == ["delivered"] * 5 + ["failed"]
    [throttled_attempt] = [a for a in log if a["outcome"] == "failed"]
    assert throttled_attempt["status_code"] == 429
    assert clock.now - T0 >= 2.0  # the Retry-After was waited out (on the fake clock)
