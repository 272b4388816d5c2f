"""Monitoring-tool adapters: Alertmanager, Grafana and PagerDuty payloads in, im.alert.* out."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.app import create_app
from incidents.settings import Settings
from tests.support import ADMIN_TOKEN, TEST_TLS, serve_in_thread

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def stored_event(client: httpx.Client, event_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/events/{event_id}").json()
    return body


def producer(client: httpx.Client, name: str, tenant: str = "acme") -> str:
    """A stored producer principal's token."""
    body = {"name": name, "roles": ["producer"], "tenant": tenant, "publish": ["im.alert.*"]}
    r = client.post("/v1/principals", json=body)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


# --- Alertmanager --------------------------------------------------------------------------


def test_alertmanager_firing_payload_becomes_one_trigger_per_alert(client: httpx.Client) -> None:
    """Each firing alert is an im.alert.trigger keyed by fingerprint, sourced from externalURL,
    severity mapped from labels.severity, summary from annotations, original kept."""
    payload = fixture("alertmanager_v4_firing.json")
    r = client.post("/v1/ingest/alertmanager", json=payload)
    assert r.status_code == 202, r.text
    accepted = r.json()["accepted"]
    assert [a["alert"]["key"] for a in accepted] == ["3b15fd163bd4f0e3", "8f0a2c9e71d4b6a5"]
    first = stored_event(client, accepted[0]["id"])["event"]
    assert first["type"] == "im.alert.trigger"
    assert first["source"] == "http://alertmanager.example.com:9093"
    assert first["imcorrelationkey"] == "3b15fd163bd4f0e3"
    assert first["time"] == "2024-05-01T12:00:03.123456Z"
    data = first["data"]
    assert data["summary"] == "Checkout API error rate above 5%" and data["severity"] == "SEV1"
    assert data["truncated_alerts"] == 3 and data["group_key"] == payload["groupKey"]
    assert "ends_at" not in data and data["starts_at"] == "2024-05-01T12:00:03.123456Z"
    assert data["original"]["alerts"] == [payload["alerts"][0]]
    assert data["original"]["routeLabels"] == {"team": "payments"}
    second = stored_event(client, accepted[1]["id"])["event"]["data"]
    assert second["severity"] == "SEV3"


def test_alertmanager_critical_alert_declares_an_incident(client: httpx.Client) -> None:
    """The critical alert (SEV1) declares an incident named after it; the warning does not."""
    accepted = client.post(
        "/v1/ingest/alertmanager", json=fixture("alertmanager_v4_firing.json")
    ).json()["accepted"]
    incident = accepted[0]["incident"]
    assert "incident" not in accepted[1]
    body = client.get(f"/v1/incidents/{incident}").json()
    assert body["title"] == "Checkout API error rate above 5%" and body["service"] == "checkout"


def test_alertmanager_resend_is_stored_once(client: httpx.Client) -> None:
    """A retried notification is answered 200 as duplicates, and counts nothing twice."""
    payload = fixture("alertmanager_v4_firing.json")
    assert client.post("/v1/ingest/alertmanager", json=payload).status_code == 202
    again = client.post("/v1/ingest/alertmanager", json=payload)
    assert again.status_code == 200
    assert all(a["duplicate"] for a in again.json()["accepted"])
    assert client.get("/v1/alerts/3b15fd163bd4f0e3").json()["count"] == 1


def test_alertmanager_resolved_payload_resolves_the_alert(client: httpx.Client) -> None:
    """A resolved alert becomes im.alert.resolve; the alert resolves, its incident stays open."""
    fired = client.post("/v1/ingest/alertmanager", json=fixture("alertmanager_v4_firing.json"))
    incident = fired.json()["accepted"][0]["incident"]
    r = client.post("/v1/ingest/alertmanager", json=fixture("alertmanager_v4_resolved.json"))
    assert r.status_code == 202, r.text
    result = r.json()["accepted"][0]
    assert result["alert"]["outcome"] == "resolved" and result["incident"] == incident
    event = stored_event(client, result["id"])["event"]
    assert event["type"] == "im.alert.resolve"
    assert event["data"]["ends_at"] == "2024-05-01T12:25:18.987654Z"
    assert client.get("/v1/alerts/3b15fd163bd4f0e3").json()["status"] == "resolved"
    assert client.get(f"/v1/incidents/{incident}").json()["status"] == "open"


def test_alertmanager_resolve_for_an_unknown_alert_is_ignored_with_2xx(
    client: httpx.Client,
) -> None:
    """Resolving an alert the gateway never saw is accepted (no retry storm) and says ignored."""
    r = client.post("/v1/ingest/alertmanager", json=fixture("alertmanager_v4_resolved.json"))
    assert r.status_code == 202
    assert r.json()["accepted"][0]["alert"]["outcome"] == "ignored"


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"version": "3"}, "/version"),
        ({"alerts": [{"status": "firing", "labels": {}}]}, "/alerts/0/fingerprint"),
        ({"status": "burning"}, "/status"),
    ],
)
def test_alertmanager_bad_payload_is_4xx_naming_the_field(
    client: httpx.Client, change: dict[str, Any], pointer: str
) -> None:
    """A payload that is not version 4 is refused with a 4xx (Alertmanager does not retry)."""
    payload = fixture("alertmanager_v4_firing.json") | change
    r = client.post("/v1/ingest/alertmanager", json=payload)
    assert r.status_code == 422
    assert pointer in [e["pointer"] for e in r.json()["errors"]]


def test_alertmanager_needs_a_token_and_valid_json(
    anon: httpx.Client, client: httpx.Client
) -> None:
    """No token is 401; a broken body is 400."""
    assert anon.post("/v1/ingest/alertmanager", json={}).status_code == 401
    r = client.post("/v1/ingest/alertmanager", content=b"{not json")
    assert r.status_code == 400


def test_alertmanager_with_no_alerts_stores_nothing(client: httpx.Client) -> None:
    """An empty alerts list is accepted with nothing stored."""
    payload = fixture("alertmanager_v4_firing.json") | {"alerts": []}
    r = client.post("/v1/ingest/alertmanager", json=payload)
    assert r.status_code == 202 and r.json()["accepted"] == []


# --- Grafana -------------------------------------------------------------------------------


def test_grafana_payload_maps_state_values_and_urls(client: httpx.Client) -> None:
    """Grafana's firing alert triggers, its resolved one resolves; values, silence, dashboard,
    panel and image URLs are kept."""
    payload = fixture("grafana_v1.json")
    r = client.post("/v1/ingest/grafana", json=payload)
    assert r.status_code == 202, r.text
    firing, resolved = r.json()["accepted"]
    assert firing["alert"]["outcome"] == "opened"
    assert resolved["alert"]["outcome"] == "ignored"  # never saw it fire
    event = stored_event(client, firing["id"])["event"]
    assert event["type"] == "im.alert.trigger" and event["source"] == "https://play.grafana.org/"
    data = event["data"]
    assert data["values"] == {"B": 44.23943737541908, "C": 1}
    assert data["summary"] == "This alert was triggered for zone us-1"
    assert data["severity"] == "SEV3" and data["details"]["state"] == "alerting"
    assert [link["text"] for link in data["links"]] == ["Source", "Silence"]
    other = stored_event(client, resolved["id"])["event"]
    assert other["type"] == "im.alert.resolve"
    assert [link["text"] for link in other["data"]["links"]] == [
        "Source",
        "Silence",
        "Dashboard",
        "Panel",
    ]
    assert other["data"]["images"][0]["src"].endswith("panel-2.png")


@pytest.fixture
def signing_gateway(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """A gateway whose policy makes the admin's Grafana requests carry an HMAC signature."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "alerts.yaml").write_text(
        "alerts:\n  grafana_signing:\n    admin:\n      secret: s3cret\n"
        "      timestamp_header: X-Grafana-Alerting-Signature-Timestamp\n"
    )
    app = create_app(settings.replace(policies_dir=policies))
    with (
        serve_in_thread(app) as url,
        httpx.Client(
            verify=TEST_TLS, base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as c,
    ):
        yield c


def test_grafana_signature_is_checked_when_configured(signing_gateway: httpx.Client) -> None:
    """With a secret configured, a correct signature passes; a wrong or missing one is 401."""
    body = json.dumps(fixture("grafana_v1.json")).encode()
    stamp = str(int(time.time()))
    good = hmac.new(b"s3cret", stamp.encode() + b":" + body, hashlib.sha256).hexdigest()

    def send(headers: dict[str, str]) -> int:
        headers = {"Content-Type": "application/json", **headers}
        return signing_gateway.post("/v1/ingest/grafana", content=body, headers=headers).status_code

    ts = "X-Grafana-Alerting-Signature-Timestamp"
    assert send({}) == 401
    assert send({"X-Grafana-Alerting-Signature": "0" * 64, ts: stamp}) == 401
    assert send({"X-Grafana-Alerting-Signature": good, ts: str(int(time.time()) - 3600)}) == 401
    assert send({"X-Grafana-Alerting-Signature": good, ts: stamp}) == 202


# --- PagerDuty -----------------------------------------------------------------------------


def enqueue(client: httpx.Client, body: dict[str, Any], token: str) -> httpx.Response:
    return client.post("/v2/enqueue", json={**body, "routing_key": token})


def test_pagerduty_trigger_ack_resolve(client: httpx.Client) -> None:
    """The documented trigger answers 202 success with its dedup_key; ack and resolve act on
    the alert; custom details, links and images are kept; the routing key is not stored."""
    r = enqueue(client, fixture("pagerduty_trigger.json"), ADMIN_TOKEN)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "success" and body["message"] == "Event processed"
    assert body["dedup_key"] == "samplekeyhere" and body["incident"].startswith("INC-")
    alert = client.get("/v1/alerts/samplekeyhere").json()
    assert alert["severity"] == "SEV1" and alert["labels"]["component"] == "mysql"
    assert alert["links"] == [{"href": "https://example.com/", "text": "Link text"}]
    event = stored_event(client, alert["last_event"])
    text = json.dumps(event)
    assert ADMIN_TOKEN not in text and "routing_key" not in text
    assert event["event"]["data"]["details"]["load avg"] == 0.75
    assert enqueue(client, fixture("pagerduty_acknowledge.json"), ADMIN_TOKEN).status_code == 202
    assert client.get("/v1/alerts/samplekeyhere").json()["status"] == "acknowledged"
    assert enqueue(client, fixture("pagerduty_resolve.json"), ADMIN_TOKEN).status_code == 202
    assert client.get("/v1/alerts/samplekeyhere").json()["status"] == "resolved"


def test_pagerduty_severities_map_to_sev1_to_sev4(client: httpx.Client) -> None:
    """critical, error, warning and info become SEV1..SEV4."""
    base = fixture("pagerduty_trigger.json")
    for n, level in enumerate(["critical", "error", "warning", "info"], start=1):
        body = base | {
            "dedup_key": f"sev-{level}",
            "payload": base["payload"] | {"severity": level},
        }
        assert enqueue(client, body, ADMIN_TOKEN).status_code == 202
        assert client.get(f"/v1/alerts/sev-{level}").json()["severity"] == f"SEV{n}"


def test_pagerduty_trigger_without_dedup_key_gets_one(client: httpx.Client) -> None:
    """A trigger with no dedup_key is given one, returned, and usable to resolve it."""
    body = fixture("pagerduty_trigger.json")
    del body["dedup_key"]
    key = enqueue(client, body, ADMIN_TOKEN).json()["dedup_key"]
    assert len(key) == 32
    resolve = {"event_action": "resolve", "dedup_key": key}
    assert enqueue(client, resolve, ADMIN_TOKEN).json()["outcome"] == "resolved"


def test_pagerduty_ack_without_an_alert_is_processed_and_ignored(client: httpx.Client) -> None:
    """Acknowledging an unknown dedup_key is 202 (PagerDuty's rule), saying it was ignored."""
    r = enqueue(client, fixture("pagerduty_acknowledge.json"), ADMIN_TOKEN)
    assert r.status_code == 202
    assert r.json()["outcome"] == "ignored" and "no open alert" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"event_action": "trigger"}, "payload"),
        ({"event_action": "explode", "dedup_key": "k"}, "/event_action"),
        ({"event_action": "resolve"}, "dedup_key"),
        (
            {
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "x", "severity": "bad"},
            },
            "/payload/severity",
        ),
    ],
)
def test_pagerduty_invalid_event_is_400_in_pagerduty_shape(
    client: httpx.Client, body: dict[str, Any], needle: str
) -> None:
    """Invalid events get PagerDuty's 400 {"status": "invalid event", "errors": [...]}."""
    r = enqueue(client, body, ADMIN_TOKEN)
    assert r.status_code == 400
    answer = r.json()
    assert answer["status"] == "invalid event" and answer["message"] == "Event object is invalid"
    assert any(needle in e for e in answer["errors"]), answer


def test_pagerduty_routing_key_must_be_a_valid_token(anon: httpx.Client) -> None:
    """An unknown routing key is 401 in PagerDuty's shape; a missing one is 400."""
    r = anon.post("/v2/enqueue", json=fixture("pagerduty_trigger.json") | {"routing_key": "nope"})
    assert r.status_code == 401 and r.json()["status"] == "invalid event"
    body = fixture("pagerduty_trigger.json")
    del body["routing_key"]
    assert anon.post("/v2/enqueue", json=body).status_code == 400


def test_pagerduty_producer_token_is_its_tenant(client: httpx.Client, anon: httpx.Client) -> None:
    """A producer's routing key puts the alert in the producer's tenant."""
    token = producer(client, "pd-acme")
    assert enqueue(anon, fixture("pagerduty_trigger.json"), token).status_code == 202
    assert client.get("/v1/alerts/samplekeyhere").status_code == 404  # admin is tenant default
    alert = client.get("/v1/alerts/samplekeyhere", params={"tenant": "acme"}).json()
    assert alert["tenant"] == "acme"
    reader = {"Authorization": f"Bearer {token}"}
    assert anon.get("/v1/alerts", headers=reader).json()["count"] == 1
    other = producer(client, "pd-other", tenant="globex")
    assert anon.get("/v1/alerts", headers={"Authorization": f"Bearer {other}"}).json()["count"] == 0


def test_pagerduty_body_over_512_kb_is_refused(anon: httpx.Client) -> None:
    """A body above 512 KB is refused in PagerDuty's shape."""
    body = fixture("pagerduty_trigger.json")
    body["payload"]["custom_details"] = {"blob": "x" * (513 * 1024)}
    r = anon.post("/v2/enqueue", json=body)
    assert r.status_code == 413 and r.json()["status"] == "invalid event"


def test_openapi_describes_the_adapter_and_read_endpoints(client: httpx.Client) -> None:
    """The OpenAPI document lists every endpoint of the lifecycle, alerts and adapters."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/ingest/alertmanager",
        "/v1/ingest/grafana",
        "/v2/enqueue",
        "/v1/alerts",
        "/v1/alerts/{key}",
        "/v1/incidents",
        "/v1/incidents/{id}",
        "/v1/incidents/{id}/timeline",
    ):
        assert path in paths, path
