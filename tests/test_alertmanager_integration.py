"""A real Prometheus Alertmanager, pushing to the gateway through its webhook receiver."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from incidents.store.embedded import free_port
from tests.delivery_support import Receiver, Workers, subscribe
from tests.support import ADMIN_TOKEN, wait_for

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BINARY is None,
        reason="prometheus-alertmanager is not installed (scripts/ci-extras installs it)",
    ),
]

CONFIG = """\
route:
  receiver: gateway
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: gateway
    webhook_configs:
      - url: {url}/v1/ingest/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


@pytest.fixture
def alertmanager(gateway: str, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on loopback whose webhook receiver is the gateway; yields its URL."""
    assert BINARY is not None
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=gateway, token=ADMIN_TOKEN))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={url}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()}"
                )
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, what="alertmanager to be ready", every=0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def received(rx: Receiver, event_type: str) -> list[dict[str, Any]]:
    """The verified events of ``event_type`` that reached the subscriber's sink."""
    return [r.event for r in rx.at("/alerts") if r.verified and r.event["type"] == event_type]


def push(alertmanager: str, ends_at: datetime | None = None) -> None:
    alert: dict[str, Any] = {
        "labels": {"alertname": "DiskFull", "severity": "critical", "service": "storage"},
        "annotations": {"summary": "Disk /var is 99% full on db-1"},
        "generatorURL": "http://prometheus.invalid/graph",
        "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    r = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    assert r.status_code == 200, r.text


def test_real_alertmanager_notifications_become_alerts_and_an_incident(
    alertmanager: str,
    client: httpx.Client,
    redis_client: redis.Redis,
    rx: Receiver,
    workers: Workers,
) -> None:
    """Alerts pushed into a real Alertmanager reach the gateway: a critical one opens an alert,
    declares an incident, is delivered signed to a subscriber, and resolves (and that resolve
    is delivered too) when Alertmanager says so."""
    subscribe(client, rx, "/alerts", protocol="HTTP", types=["im.alert.*"])
    push(alertmanager)

    def firing() -> dict[str, Any] | None:
        alerts = client.get("/v1/alerts").json()["alerts"]
        return alerts[0] if alerts else None

    alert = wait_for(firing, what="the alert to reach the gateway", every=0.2)
    assert alert["status"] == "firing" and alert["severity"] == "SEV1"
    assert alert["summary"] == "Disk /var is 99% full on db-1"
    stored = client.get(f"/v1/events/{alert['last_event']}").json()
    assert stored["event"]["source"] == alertmanager
    assert stored["event"]["data"]["original"]["version"] == "4"
    assert redis_client.xlen("incidents:outbox") >= 1
    incident = client.get(f"/v1/incidents/{alert['incident']}").json()
    assert incident["title"] == "Disk /var is 99% full on db-1" and incident["service"] == "storage"

    workers.run_until(lambda: bool(received(rx, "im.alert.trigger")))
    (trigger,) = received(rx, "im.alert.trigger")
    assert trigger["id"] == stored["event"]["id"] and trigger["source"] == alertmanager
    assert trigger["imcorrelationkey"] == alert["key"]
    assert trigger["data"]["summary"] == "Disk /var is 99% full on db-1"
    assert trigger["data"]["labels"] == {
        "alertname": "DiskFull",
        "severity": "critical",
        "service": "storage",
    }

    push(alertmanager, ends_at=datetime.now(UTC) - timedelta(seconds=1))

    def resolved() -> bool:
        current = client.get(f"/v1/alerts/{alert['key']}").json()
        return bool(current["status"] == "resolved")

    wait_for(resolved, what="Alertmanager's resolved notification", every=0.2)
    assert client.get(f"/v1/incidents/{alert['incident']}").json()["status"] == "open"
    timeline = client.get(f"/v1/incidents/{alert['incident']}/timeline").json()["timeline"]
    assert [t["type"] for t in timeline] == ["im.alert.trigger", "im.alert.resolve"]

    workers.run_until(lambda: bool(received(rx, "im.alert.resolve")))
    (resolve,) = received(rx, "im.alert.resolve")
    assert resolve["imcorrelationkey"] == alert["key"]
    assert resolve["data"]["labels"]["alertname"] == "DiskFull"
    assert resolve["data"]["original"]["alerts"][0]["status"] == "resolved"
    assert [r.event["type"] for r in rx.at("/alerts")] == ["im.alert.trigger", "im.alert.resolve"]
    assert all(r.verified for r in rx.at("/alerts"))
