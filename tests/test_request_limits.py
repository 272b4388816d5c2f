"""Bounds on what one request can cost: JSON nesting, batch length, errors listed, header size,
time to send the body; and a long validation never holds up other clients."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from incidents.app import create_app
from incidents.settings import Settings
from tests.support import ADMIN_TOKEN, STRUCTURED, TEST_TLS, assert_problem, event, serve_in_thread

BATCH = {"Content-Type": "application/cloudevents-batch+json"}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def nested(depth: int) -> str:
    """JSON text of ``depth`` nested objects around a 1."""
    return '{"a":' * depth + "1" + "}" * depth


def with_deep_data(depth: int) -> str:
    """A declare event whose data holds a value nested so the whole body is ``depth`` deep."""
    ev = event("im.incident.declare")
    ev["data"]["extra"] = "HOLE"  # the event is level 1, data level 2, extra's object level 3
    return json.dumps(ev).replace('"HOLE"', nested(depth - 2))


def alertmanager(depth: int) -> str:
    labels = nested(depth - 3)  # payload, alerts array, alert object, then the labels
    return '{"version":"4","status":"firing","alerts":[{"labels":' + labels + "}]}"


def grafana(depth: int) -> str:
    return '{"status":"firing","alerts":[{"labels":' + nested(depth - 3) + "}]}"


def enqueue(depth: int) -> str:
    details = nested(depth - 2)
    return (
        '{"routing_key":"' + ADMIN_TOKEN + '","event_action":"trigger","payload":{"summary":"s",'
        '"source":"h","severity":"critical","custom_details":' + details + "}}"
    )


DEEP_BODIES = [
    ("/v1/events", STRUCTURED, with_deep_data),
    ("/v1/events", BATCH, lambda d: "[" + with_deep_data(d - 1) + "]"),
    ("/v1/ingest/alertmanager", {}, alertmanager),
    ("/v1/ingest/grafana", {}, grafana),
    ("/v2/enqueue", {}, enqueue),
]


@pytest.mark.parametrize("depth", [65, 300, 1000, 2000])
@pytest.mark.parametrize(
    ("path", "headers", "build"), DEEP_BODIES, ids=[f"{p} {h}" for p, h, _ in DEEP_BODIES]
)
def test_json_nested_past_the_limit_is_400_naming_it(
    client: httpx.Client, path: str, headers: dict[str, str], build: Any, depth: int
) -> None:
    """JSON nested deeper than max_json_depth (64) is a 400 that names the limit, wherever."""
    r = client.post(
        path, content=build(depth), headers={"Content-Type": "application/json", **headers}
    )
    assert r.status_code == 400, r.text[:300]
    if path == "/v2/enqueue":  # PagerDuty's own error shape
        assert "64" in " ".join(r.json()["errors"])
        return
    body = assert_problem(r, 400, "json-too-deep")
    assert body["max_depth"] == 64 and "64" in body["detail"]


def test_the_depth_limit_is_exact(client: httpx.Client) -> None:
    """A body exactly max_json_depth deep is accepted; one level more is refused."""
    r = client.post("/v1/events", content=with_deep_data(64), headers=STRUCTURED)
    assert r.status_code == 202, r.text
    r = client.post("/v1/events", content=with_deep_data(65), headers=STRUCTURED)
    assert_problem(r, 400, "json-too-deep")


def test_binary_mode_data_nested_past_the_limit_is_400(client: httpx.Client) -> None:
    """In binary mode the body is the data, and its nesting is bounded the same way."""
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "deep",
        "ce-source": "/t",
        "ce-type": "example.deep",
    }
    r = client.post("/v1/events", content=nested(1000), headers=headers)
    assert assert_problem(r, 400, "json-too-deep")["max_depth"] == 64


def test_batch_longer_than_the_limit_is_413_before_any_event_is_checked(
    client: httpx.Client,
) -> None:
    """A batch over max_batch_events (1000) is refused whole, naming the limit, in a short
    answer that says nothing of its events."""
    r = client.post("/v1/events", content="[" + ",".join(["{}"] * 1001) + "]", headers=BATCH)
    body = assert_problem(r, 413, "too-many-events")
    assert body["limit"] == 1000 and body["events"] == 1001
    assert "errors" not in body and len(r.content) < 1000


def test_alertmanager_notification_with_more_alerts_than_the_limit_is_413(
    client: httpx.Client,
) -> None:
    """An Alertmanager notification becomes one event per alert: over the limit is a 413."""
    alert = {"status": "firing", "labels": {"alertname": "x"}}
    payload = {"version": "4", "status": "firing", "alerts": [alert] * 1001}
    r = client.post("/v1/ingest/alertmanager", json=payload)
    assert assert_problem(r, 413, "too-many-events")["limit"] == 1000


def test_a_bad_batch_lists_at_most_100_errors_and_counts_the_rest(client: httpx.Client) -> None:
    """Errors listed are capped at 100; the answer says how many more there were."""
    r = client.post("/v1/events", content="[" + ",".join(["{}"] * 300) + "]", headers=BATCH)
    body = assert_problem(r, 400, "invalid-cloudevent")
    assert len(body["errors"]) == 100
    assert body["errors_not_listed"] == 300 * 4 - 100  # id, source, specversion, type each
    assert "1200" in body["detail"]


@pytest.fixture
def roomy(settings: Settings) -> Iterator[str]:
    """A gateway that takes batches of 100,000 events and cuts headers and bodies short."""
    loose = settings.replace(max_batch_events=100_000, max_header_bytes=2048, body_timeout=0.5)
    with serve_in_thread(create_app(loose)) as url:
        yield url


def test_a_long_validation_does_not_hold_up_other_requests(roomy: str) -> None:
    """While a batch of 30,000 bad events is checked, a small request is answered at once."""
    batch = "[" + ",".join(["{}"] * 30_000) + "]"
    done: dict[str, float] = {}

    def post_batch() -> None:
        with httpx.Client(verify=TEST_TLS, base_url=roomy, headers=AUTH, timeout=120) as c:
            r = c.post("/v1/events", content=batch, headers=BATCH)
            done["status"] = r.status_code
            done["at"] = time.monotonic()

    started = time.monotonic()
    sender = threading.Thread(target=post_batch)
    sender.start()
    with httpx.Client(verify=TEST_TLS, base_url=roomy, timeout=120) as c:
        time.sleep(0.3)  # the batch is being checked by now
        asked = time.monotonic()
        assert c.get("/healthz").status_code == 200
        answered = time.monotonic()
    sender.join()
    assert done["status"] == 400
    assert done["at"] > answered, "the batch finished first; nothing was measured"
    assert answered - asked < 0.5, (answered - asked, done["at"] - started)


def test_headers_over_the_limit_are_431(roomy: str) -> None:
    """A request whose headers exceed max_header_bytes is a 431 problem naming the limit."""
    r = httpx.get(roomy + "/v1/incidents", headers={**AUTH, "x-padding": "p" * 3000})
    body = assert_problem(r, 431, "headers-too-large")
    assert body["limit"] == 2048


def slow_request(base: str, path: str, sent: bytes, declared: int) -> bytes:
    """Send headers and part of a body, then nothing more; return what the server answers."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        answer = b""
        while True:
            part = sock.recv(65536)
            if not part:
                return answer  # closed by the server
            answer += part


@pytest.mark.parametrize("path", ["/v1/events", "/v1/ingest/alertmanager", "/v1/subscriptions"])
def test_a_body_that_does_not_arrive_in_time_is_408(roomy: str, path: str) -> None:
    """A body slower than body_timeout gets a 408 problem and the connection is closed."""
    started = time.monotonic()
    answer = slow_request(roomy, path, b'{"specversion":', 500)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"application/problem+json" in answer and b"body-timeout" in answer
    assert time.monotonic() - started < 5
