"""Alert correlation through POST /v1/events, the alert read API, and alerts meeting incidents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.model.severity import Severity
from incidents.policy.files import PolicyError, load_alert_rules
from incidents.settings import Settings
from tests.support import ADMIN_TOKEN, TEST_TLS, event, serve_in_thread

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def alert(
    client: httpx.Client, type_: str, key: str, severity: str = "SEV3", **attrs: Any
) -> httpx.Response:
    data = {"summary": f"{key} is failing", "severity": severity, "labels": {"service": "api"}}
    return client.post(
        "/v1/events",
        content=json.dumps(event(type_, data, imcorrelationkey=key, **attrs)),
        headers=STRUCTURED,
    )


def current(client: httpx.Client, key: str) -> dict[str, Any]:
    r = client.get(f"/v1/alerts/{key}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def meta_of(client: httpx.Client, r: httpx.Response) -> dict[str, Any]:
    event_id = r.json()["accepted"][0]["id"]
    meta: dict[str, Any] = client.get(f"/v1/events/{event_id}").json()["meta"]
    return meta


def test_trigger_opens_an_alert(client: httpx.Client) -> None:
    """A first trigger opens alert number 1, firing, count 1."""
    assert alert(client, "im.alert.trigger", "disk-full").status_code == 202
    body = current(client, "disk-full")
    assert (body["status"], body["number"], body["count"]) == ("firing", 1, 1)
    assert body["severity"] == "SEV3" and body["summary"] == "disk-full is failing"


def test_repeat_trigger_is_deduplicated_and_not_fanned_out(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """A trigger on an open alert raises count and last-seen, and is marked not to fan out."""
    alert(client, "im.alert.trigger", "k1")
    first_seen = current(client, "k1")["last_seen"]
    r = alert(client, "im.alert.trigger", "k1")
    body = current(client, "k1")
    assert body["count"] == 2 and body["number"] == 1 and body["last_seen"] >= first_seen
    meta = meta_of(client, r)
    assert meta["alert"]["outcome"] == "deduplicated" and meta["fanout"] is False


def test_repeat_trigger_with_a_new_severity_is_fanned_out(client: httpx.Client) -> None:
    """A repeat trigger that changes severity updates the alert and is delivered again."""
    alert(client, "im.alert.trigger", "k2", "SEV3")
    r = alert(client, "im.alert.trigger", "k2", "P2")
    assert current(client, "k2")["severity"] == "SEV2"
    meta = meta_of(client, r)
    assert meta["alert"]["outcome"] == "escalated" and "fanout" not in meta


def test_ack_and_resolve_act_on_the_open_alert(client: httpx.Client) -> None:
    """ack moves firing -> acknowledged; resolve closes it; a repeat ack is quiet."""
    alert(client, "im.alert.trigger", "k3")
    alert(client, "im.alert.ack", "k3")
    assert current(client, "k3")["status"] == "acknowledged"
    again = alert(client, "im.alert.ack", "k3")
    assert meta_of(client, again)["alert"]["outcome"] == "unchanged"
    alert(client, "im.alert.trigger", "k3")
    assert current(client, "k3")["status"] == "acknowledged"
    alert(client, "im.alert.resolve", "k3")
    body = current(client, "k3")
    assert body["status"] == "resolved" and body["resolved_at"]


def test_ack_or_resolve_without_an_open_alert_is_ignored_clearly(client: httpx.Client) -> None:
    """With no open alert, ack and resolve are kept but ignored, with a reason, not fanned out."""
    r = alert(client, "im.alert.resolve", "never-fired")
    assert r.status_code == 202
    meta = meta_of(client, r)
    assert meta["alert"]["outcome"] == "ignored" and meta["fanout"] is False
    assert "no open alert" in meta["alert"]["reason"]
    assert client.get("/v1/alerts/never-fired").status_code == 404


def test_trigger_after_resolve_opens_a_new_alert(client: httpx.Client) -> None:
    """After a resolve the next trigger opens alert number 2 with a fresh count."""
    alert(client, "im.alert.trigger", "k4")
    alert(client, "im.alert.trigger", "k4")
    alert(client, "im.alert.resolve", "k4")
    r = alert(client, "im.alert.trigger", "k4")
    assert meta_of(client, r)["alert"]["outcome"] == "opened"
    body = current(client, "k4")
    assert (body["number"], body["count"], body["status"]) == (2, 1, "firing")


def test_list_filters_alerts(client: httpx.Client) -> None:
    """GET /v1/alerts lists the latest first and filters on status and severity."""
    alert(client, "im.alert.trigger", "a", "SEV2")
    alert(client, "im.alert.trigger", "b", "SEV4")
    alert(client, "im.alert.resolve", "b")

    def keys(**params: str) -> list[str]:
        r = client.get("/v1/alerts", params=params)
        assert r.status_code == 200, r.text
        return [a["key"] for a in r.json()["alerts"]]

    assert keys() == ["b", "a"]
    assert keys(status="firing") == ["a"]
    assert keys(severity="sev4") == ["b"]
    assert client.get("/v1/alerts", params={"status": "burning"}).status_code == 400


def test_alert_naming_an_incident_is_attached_to_its_timeline(client: httpx.Client) -> None:
    """An alert with imincidentid appears on that incident's timeline and bumps its version."""
    body = {"title": "API slow", "severity": "SEV3", "service": "api"}
    ev = event("im.incident.declare", body)
    inc = client.post("/v1/events", content=json.dumps(ev), headers=STRUCTURED).json()
    incident = inc["accepted"][0]["incident"]
    alert(client, "im.alert.trigger", "latency", imincidentid=incident)
    assert current(client, "latency")["incident"] == incident
    assert client.get(f"/v1/incidents/{incident}").json()["version"] == 2
    types = [t["type"] for t in client.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]]
    assert types == ["im.incident.declare", "im.alert.trigger"]


def test_alert_naming_an_unknown_incident_is_409(client: httpx.Client) -> None:
    """An alert cannot attach to an incident that was never declared."""
    assert alert(client, "im.alert.trigger", "x", imincidentid="INC-77").status_code == 409


def test_sev1_alert_declares_an_incident_that_later_alerts_attach_to(
    client: httpx.Client,
) -> None:
    """A SEV1 alert declares a SEV1 incident titled with its summary; its resolution is
    appended to the timeline and leaves the incident open; a re-trigger attaches again."""
    r = alert(client, "im.alert.trigger", "outage", "P1")
    incident = r.json()["accepted"][0]["incident"]
    assert incident.startswith("INC-")
    body = client.get(f"/v1/incidents/{incident}").json()
    assert body["title"] == "outage is failing" and body["severity"] == "SEV1"
    assert body["service"] == "api" and body["external_refs"] == {"alert": "outage"}
    alert(client, "im.alert.trigger", "outage", "P1")
    alert(client, "im.alert.resolve", "outage", "P1")
    body = client.get(f"/v1/incidents/{incident}").json()
    assert body["status"] == "open" and body["version"] == 3
    timeline = client.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]
    assert timeline[-1]["type"] == "im.alert.resolve"
    assert timeline[-1]["title"].startswith("Alert resolved")
    again = alert(client, "im.alert.trigger", "outage", "P1")
    assert again.json()["accepted"][0]["incident"] == incident
    assert current(client, "outage")["number"] == 2


def test_lower_severity_alert_declares_nothing(client: httpx.Client) -> None:
    """By default only SEV1 alerts declare incidents."""
    r = alert(client, "im.alert.trigger", "minor", "SEV2")
    assert "incident" not in r.json()["accepted"][0]
    assert client.get("/v1/incidents").json()["incidents"] == []


def test_alert_after_its_incident_closed_declares_a_new_one(client: httpx.Client) -> None:
    """A closed incident takes no more alerts: the next SEV1 trigger declares a new incident."""
    first = alert(client, "im.alert.trigger", "again", "SEV1").json()["accepted"][0]["incident"]
    alert(client, "im.alert.resolve", "again", "SEV1")
    for type_ in ("im.incident.resolve", "im.incident.close"):
        ev = event(type_, {}, imincidentid=first)
        client.post("/v1/events", content=json.dumps(ev), headers=STRUCTURED)
    second = alert(client, "im.alert.trigger", "again", "SEV1").json()["accepted"][0]["incident"]
    assert second != first


@pytest.fixture
def strict_gateway(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """A gateway whose policy declares incidents from SEV2 alerts upward."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "alerts.yaml").write_text("alerts:\n  declare_incident_at: SEV2\n")
    app = create_app(settings.replace(policies_dir=policies))
    with (
        serve_in_thread(app) as url,
        httpx.Client(
            verify=TEST_TLS, base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as c,
    ):
        yield c


def test_declare_threshold_comes_from_policy(strict_gateway: httpx.Client) -> None:
    """alerts.declare_incident_at in policies/ sets which alerts declare incidents."""
    r = alert(strict_gateway, "im.alert.trigger", "sev2", "SEV2")
    assert r.json()["accepted"][0]["incident"].startswith("INC-")
    r = alert(strict_gateway, "im.alert.trigger", "sev3", "SEV3")
    assert "incident" not in r.json()["accepted"][0]


def test_alert_rules_load_from_yaml(tmp_path: Path) -> None:
    """The alerts section maps severity labels and can turn declaring off."""
    (tmp_path / "a.yaml").write_text(
        "alerts:\n  declare_incident_at: never\n  severity_map: {disaster: SEV1}\n"
    )
    rules = load_alert_rules(tmp_path)
    assert rules.declare_incident_at is None and not rules.declares(Severity.SEV1)
    assert rules.severity_of("Disaster") is Severity.SEV1
    assert rules.severity_of("warning") is Severity.SEV3
    assert rules.severity_of("bogus") is Severity.SEV3
    assert load_alert_rules(tmp_path / "missing").declares(Severity.SEV1)


def test_bad_alert_rules_name_the_file_and_key(tmp_path: Path) -> None:
    """A bad severity in the alerts section fails loudly, naming where it is."""
    (tmp_path / "p.yaml").write_text("alerts:\n  declare_incident_at: SEV9\n")
    with pytest.raises(PolicyError, match=r"p\.yaml:2: alerts\.declare_incident_at"):
        load_alert_rules(tmp_path)


def test_alert_list_pages_with_a_cursor(client: httpx.Client) -> None:
    """GET /v1/alerts pages with limit and next_cursor, each alert once, until null."""
    keys = [f"paged-{n}" for n in range(5)]
    for key in keys:
        assert alert(client, "im.alert.trigger", key).status_code == 202
    walked: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/alerts", params=params).json()
        assert len(body["alerts"]) <= 2 and body["count"] == len(body["alerts"])
        walked += [a["key"] for a in body["alerts"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(walked) == sorted(keys)
    assert walked == [a["key"] for a in client.get("/v1/alerts").json()["alerts"]]
    r = client.get("/v1/alerts", params={"cursor": "!"})
    assert r.status_code == 400 and r.json()["errors"][0]["pointer"] == "/query/cursor"
