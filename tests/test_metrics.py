"""GET /metrics: Prometheus text that counts what the gateway did."""

from __future__ import annotations

import json
import re

import httpx

from tests.support import event


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{[^}]*\})?")
    found = re.search(r"^" + pattern + r" (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_requests_events_and_the_outbox(client: httpx.Client) -> None:
    """Accepted and rejected events, request counts and the outbox length are exposed."""
    headers = {"Content-Type": "application/cloudevents+json"}
    for _ in range(3):
        assert (
            client.post("/v1/events", content=json.dumps(event()), headers=headers).status_code
            == 202
        )
    assert client.post("/v1/events", content=b"{", headers=headers).status_code == 400
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, "incidents_events_total", 'outcome="accepted"') == 3
    assert sample(text, "incidents_events_total", 'outcome="rejected:malformed-json"') == 1
    assert sample(text, "incidents_outbox_length") == 3
    assert (
        sample(
            text, "incidents_http_requests_total", 'method="POST",route="/v1/events",status="202"'
        )
        == 3
    )
    assert sample(text, "incidents_http_request_seconds_count", 'route="/v1/events"') == 4
