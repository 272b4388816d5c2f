"""Log lines: JSON or text, one line per record with the ids that apply; a client that goes
away mid-body is one info line and a count, not an error; and no secret, token or redacted
field reaches a log line of a real `incidents serve` and `incidents worker`."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from incidents.logs import JsonFormatter, TextFormatter, log_ids, scrub
from incidents.settings import Settings, SettingsError
from incidents.store.secret_box import new_key
from tests.delivery_support import Receiver
from tests.process_support import free_port, gateway_processes
from tests.support import (
    ADMIN_TOKEN,
    STRUCTURED,
    admin_client,
    as_token,
    create_principal,
    event,
    wait_for,
)


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    found = logging.LogRecord("incidents.test", logging.INFO, __file__, 1, message, args, None)
    found.__dict__.update(extra)
    return found


def test_a_json_line_holds_time_level_logger_message_and_the_ids_that_apply() -> None:
    """Ids come from ``log_ids`` around the call and from ``extra=``; the line is one object."""
    with log_ids(subscription="sub_1", delivery="d_1", incident=None):
        line = JsonFormatter().format(record("sent %d", 3, trace_id="abc", event_id="e-1"))
    found = json.loads(line)
    assert found.pop("time").endswith("+00:00")
    assert found == {"level": "INFO", "logger": "incidents.test", "message": "sent 3",
                     "subscription": "sub_1", "delivery": "d_1", "trace_id": "abc",
                     "event_id": "e-1"}  # fmt: skip


def test_an_exception_stays_on_the_one_json_line() -> None:
    """A traceback is the ``exception`` field of the record's one line."""
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("it failed")
        failed.exc_info = sys.exc_info()
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_lines_name_the_ids_after_the_message() -> None:
    """A text line ends its first line with the ids as key=value."""
    with log_ids(delivery="d_9"):
        line = TextFormatter().format(record("attempt failed"))
    assert line.endswith("INFO incidents.test: attempt failed [delivery=d_9]")


def test_anything_shaped_like_a_credential_is_scrubbed() -> None:
    """URL credentials, bearer tokens and webhook secrets are replaced, whoever logs them."""
    assert scrub("redis://:hunter2@redis:6379/0 down") == "redis://***@redis:6379/0 down"
    assert scrub("https://bot:pw@acme.atlassian.net/x") == "https://***@acme.atlassian.net/x"
    assert scrub("sent Authorization: Bearer abc.def-ghi") == "sent Authorization: Bearer ***"
    assert scrub("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=") == "secret ***"
    assert scrub("POST /v1/events 202") == "POST /v1/events 202"


def test_the_log_format_setting_takes_json_or_text() -> None:
    """INCIDENTS_LOG_FORMAT is json or text; anything else is refused naming the value."""
    assert Settings.from_env({"INCIDENTS_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({}).log_format is None
    with pytest.raises(SettingsError, match="'yaml'"):
        Settings.from_env({"INCIDENTS_LOG_FORMAT": "yaml"})


def disconnect_mid_body(url: str) -> None:
    """Send a request head promising a body, part of the body, and hang up."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as conn:
        conn.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
            + b"Content-Type: application/cloudevents+json\r\nContent-Length: 5000\r\n\r\n"
            + b'{"specversion": "1.0",'
        )


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in /metrics")


def test_a_client_gone_mid_body_is_one_info_line_and_a_count(
    client: httpx.Client, gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects while its body is read: no error, no traceback, one
    info line, and incidents_client_disconnects_total goes up by one."""
    caplog.set_level(logging.INFO)
    before = metric(client, "incidents_client_disconnects_total")
    disconnect_mid_body(gateway)
    wait_for(
        lambda: metric(client, "incidents_client_disconnects_total") == before + 1,
        what="the disconnect counted",
    )
    gone = [r for r in caplog.records if "client disconnected" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


# Marker values: each stands for a secret, a token or a field redacted by x-dataclass.
MARKERS = {
    "password": "MARKER-basic-password-7d1",
    "bearer": "MARKER-bearer-token-8e2",
    "client_secret": "MARKER-oauth-client-secret-9f3",
    "routing_key": "MARKER-routing-key-0a4",
    "inbound_secret": "MARKER-inbound-secret-1b5",
    "header": "MARKER-custom-header-2c6",
    "summary": "MARKER-confidential-summary-3d7",
    "customer_impact": "MARKER-restricted-impact-4e8",
    "note": "MARKER-confidential-note-5f9",
    "bad_token": "MARKER-wrong-bearer-6a0",
}


INCIDENT_EVENTS = ["im.incident.*"]


def subscriptions(dead: str, rx: Receiver) -> list[dict[str, Any]]:
    """One subscription per kind of secret; the connectors' sinks refuse connections, so
    each attempt fails (and is logged)."""
    basic = {"basic": {"username": "svc", "password": MARKERS["password"]}}
    oauth = {"oauth2": {"token_url": f"{dead}/token", "client_id": "c",
                        "client_secret": MARKERS["client_secret"], "scope": "s"}}  # fmt: skip
    return [
        {"sink": rx.sink("/hook"),
         "protocolsettings": {"headers": {"X-Api-Key": MARKERS["header"]}}},
        {"sink": dead, "format": "servicenow", "types": INCIDENT_EVENTS,
         "formatsettings": {"auth": basic, "inbound_secret": MARKERS["inbound_secret"]}},
        {"sink": dead, "format": "jira", "types": INCIDENT_EVENTS,
         "formatsettings": {"auth": {"bearer": MARKERS["bearer"]},
                            "fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Bug"}}}},
        {"sink": dead, "format": "servicenow", "types": INCIDENT_EVENTS,
         "formatsettings": {"auth": oauth}},
        {"sink": f"{dead}/v2/enqueue", "format": "pagerduty",
         "formatsettings": {"routing_key": MARKERS["routing_key"]}},
    ]  # fmt: skip


@pytest.mark.slow
def test_no_secret_token_or_redacted_field_reaches_the_logs(
    settings: Settings, rx: Receiver, tmp_path: Path
) -> None:
    """Real `incidents serve` and `incidents worker` processes logging JSON: subscriptions
    holding secrets, events holding fields above a subscriber's clearance, failing deliveries,
    a wrong token and a client gone mid-body leave JSON lines naming subscriptions and
    deliveries, and not one of the marker values, tokens or webhook secrets."""
    settings = settings.replace(secret_key=new_key(), retry_schedule=(0.2, 0.2))
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with gateway_processes(settings, tmp_path / "logs", {"INCIDENTS_LOG_FORMAT": "json"}) as gw:
        admin = admin_client(gw.url, timeout=10)
        reader = create_principal(admin, name="reader", roles=["subscriber"], clearance="internal")
        secrets = [reader["token"]]
        with as_token(admin, reader["token"]) as low:
            made = low.post("/v1/subscriptions", json={"sink": rx.sink("/low")})
            assert made.status_code == 201, made.text
            secrets.append(made.json()["secret"])
        for body in subscriptions(dead, rx):
            made = admin.post("/v1/subscriptions", json=body)
            assert made.status_code == 201, made.text
            secrets.append(made.json()["secret"])
        declare = event(data={"title": "Checkout down", "severity": "SEV1", "service": "shop",
                              "summary": MARKERS["summary"],
                              "customer_impact": MARKERS["customer_impact"]},
                        imvisibility="public")  # fmt: skip
        assert admin.post("/v1/events", json=declare, headers=STRUCTURED).status_code == 202
        incident = admin.get(f"/v1/events/{declare['id']}").json()["event"]["imincidentid"]
        note = event("im.incident.note", {"text": MARKERS["note"]}, imincidentid=incident,
                     imvisibility="public")  # fmt: skip
        assert admin.post("/v1/events", json=note, headers=STRUCTURED).status_code == 202
        wrong = {**STRUCTURED, "Authorization": f"Bearer {MARKERS['bad_token']}"}
        assert httpx.post(gw.url + "/v1/events", json=note, headers=wrong).status_code == 401
        disconnect_mid_body(gw.url)
        wait_for(lambda: len(rx.at("/low")) >= 2 and len(rx.at("/hook")) >= 2, 60,
                 what="both events delivered")  # fmt: skip
        assert MARKERS["summary"] not in rx.at("/low")[0].body.decode()  # redacted for it
        wait_for(lambda: gw.log("serve").count("client disconnected") == 1, 30,
                 what="the disconnect logged")  # fmt: skip
        wait_for(lambda: "delivery attempt" in gw.log("worker"), 60, what="a failure logged")
        admin.close()
    lines = gw.lines()
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
    failures = [p for p in parsed if p["message"].startswith("delivery attempt")]
    assert failures and all({"subscription", "delivery", "event_id"} <= set(p) for p in failures)
    assert not [p for p in parsed if p["level"] == "ERROR"], "an ERROR logged"
    text = "\n".join(lines)
    for value in [*MARKERS.values(), ADMIN_TOKEN, settings.secret_key or "", *secrets]:
        assert value and value not in text, f"{value!r} appears in a log line"
