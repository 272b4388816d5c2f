"""Admission: publish patterns, producer clearance, label defaults, rule upgrades, rejections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.errors import PolicyDenied
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.policy.admission import PolicyAdmission
from incidents.policy.files import load_policies
from incidents.policy.rules import Match
from incidents.settings import Settings
from tests.support import (
    admin_gateway,
    as_token,
    create_principal,
    event,
)

ROOT = Path(__file__).resolve().parent.parent
CE_JSON = {"Content-Type": "application/cloudevents+json"}

POLICY = """
defaults:
  - name: security-source
    match: {source: "/security/*"}
    dataclass: confidential
    visibility: restricted
  - name: status-page
    match: {type: "im.incident.*", source: "/statuspage"}
    visibility: public
  - name: alerts
    match: {type: "im.alert.*"}
    dataclass: confidential
rules:
  - name: payments-confidential
    match:
      type: "im.incident.*"
      data: {service: "payments-*"}
    require: {dataclass: confidential}
  - name: team-label-restricted
    match:
      data: {labels.team: ["red", "blue"]}
    require: {visibility: restricted}
  - name: no-test-traffic
    match: {source: "/test/*"}
    reject: test sources may not publish here
  - name: acme-alerts-internal
    match: {type: "im.alert.*", tenant: "acme"}
    require: {visibility: internal}
"""


def producer(**kw: Any) -> Principal:
    fields: dict[str, Any] = {
        "id": "prn_1",
        "name": "tool",
        "roles": frozenset({"producer"}),
        "tenant": "acme",
        "clearance": "confidential",
        "publish": ("im.*",),
    }
    fields.update(kw)
    return Principal(**fields)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "test.yaml").write_text(POLICY)
    return d


@pytest.fixture
def admission(policy_dir: Path) -> PolicyAdmission:
    return PolicyAdmission(load_policies(policy_dir, ROOT / "schemas"))


def admit(
    admission: PolicyAdmission, principal: Principal | None = None, **attrs: Any
) -> CloudEvent:
    raw = event(**attrs)
    return admission.admit(CloudEvent.from_dict(raw), principal or producer())


def labels(ev: CloudEvent) -> tuple[Any, Any, Any]:
    return ev.get("imdataclass"), ev.get("imvisibility"), ev.get("imtenant")


def test_unlabelled_event_gets_the_fallback_and_the_tenant(admission: PolicyAdmission) -> None:
    """An event no default matches is internal/internal and carries the producer's tenant."""
    assert labels(admit(admission)) == ("internal", "internal", "acme")


def test_first_matching_default_sets_each_label(admission: PolicyAdmission) -> None:
    """Defaults match type and source; each label comes from the first default that sets it."""
    assert labels(admit(admission, source="/security/ids")) == (
        "confidential",
        "restricted",
        "acme",
    )
    assert labels(admit(admission, source="/statuspage")) == ("internal", "public", "acme")
    alert = admit(admission, type_="im.alert.trigger", source="/statuspage", imvisibility="public")
    assert labels(alert)[0] == "confidential"


def test_producer_labels_are_kept(admission: PolicyAdmission) -> None:
    """Labels a producer sets within its clearance are kept over the defaults."""
    ev = admit(admission, source="/security/ids", imdataclass="public", imvisibility="public")
    assert labels(ev) == ("public", "public", "acme")


def test_rules_upgrade_on_data_fields_and_never_lower(admission: PolicyAdmission) -> None:
    """A rule matching a data field raises labels; a higher label from the producer stays."""
    data: dict[str, Any] = {"title": "t", "severity": "SEV2", "service": "payments-api"}
    assert labels(admit(admission, data=data, imvisibility="public"))[:2] == (
        "confidential",
        "public",
    )
    data["labels"] = {"team": "red"}
    assert labels(admit(admission, data=data, imvisibility="public"))[:2] == (
        "confidential",
        "restricted",
    )
    data["service"] = "search"
    assert labels(admit(admission, data=data, imdataclass="confidential"))[0] == "confidential"


def test_rules_match_the_producer_tenant(admission: PolicyAdmission) -> None:
    """A tenant-scoped rule applies only to producers of that tenant."""
    ours = admit(admission, type_="im.alert.trigger", imvisibility="public")
    theirs = admit(
        admission, producer(tenant="globex"), type_="im.alert.trigger", imvisibility="public"
    )
    assert labels(ours)[1] == "internal" and labels(theirs)[1] == "public"


def test_reject_rule_names_itself(admission: PolicyAdmission) -> None:
    """A matching reject rule is a PolicyDenied naming the rule and its reason."""
    with pytest.raises(PolicyDenied) as caught:
        admit(admission, source="/test/load")
    assert caught.value.extra["rule"] == "no-test-traffic"
    assert "test sources may not publish here" in caught.value.detail


def test_type_outside_publish_patterns_is_denied(admission: PolicyAdmission) -> None:
    """Publishing a type no pattern allows is denied by rule publish-patterns."""
    with pytest.raises(PolicyDenied) as caught:
        admit(admission, producer(publish=("im.alert.*",)))
    assert caught.value.extra["rule"] == "publish-patterns"
    assert "im.incident.declare" in caught.value.detail


def test_labelling_above_own_clearance_is_denied(admission: PolicyAdmission) -> None:
    """A producer may not label an event above its clearance (rule producer-clearance)."""
    with pytest.raises(PolicyDenied) as caught:
        admit(admission, producer(clearance="internal"), imdataclass="confidential")
    assert caught.value.extra["rule"] == "producer-clearance"


def test_policy_may_upgrade_above_the_producer_clearance(admission: PolicyAdmission) -> None:
    """An upgrade by policy is not the producer's label, so it is allowed."""
    ev = admit(admission, producer(clearance="public"), source="/security/x")
    assert labels(ev)[0] == "confidential"


def test_data_matches_compare_scalars_as_text() -> None:
    """Data conditions match numbers and booleans by their text; missing paths never match."""
    match = Match(data=((("labels", "tier"), ("1",)), (("paged",), ("true",))))
    assert match.matches("t", "s", "acme", {"labels": {"tier": 1}, "paged": True})
    assert not match.matches("t", "s", "acme", {"labels": {"tier": 2}, "paged": True})
    assert not match.matches("t", "s", "acme", {"paged": True})
    assert not match.matches("t", "s", "acme", {"labels": {"tier": [1]}, "paged": True})
    assert Match().matches("any", "thing", "at", None)


@pytest.fixture
def policy_client(settings: Settings, policy_dir: Path) -> Iterator[httpx.Client]:
    """An admin client for a gateway that runs with the test policy."""
    with (
        admin_gateway(settings.replace(policies_dir=policy_dir)) as c,
    ):
        yield c


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/v1/events", content=json.dumps(body), headers=CE_JSON)


def test_http_denials_are_403_problems_naming_the_rule(policy_client: httpx.Client) -> None:
    """Over HTTP each denial is a 403 policy-denied problem with the rule's name."""
    created = create_principal(
        policy_client, name="am", clearance="internal", publish=["im.alert.*"]
    )
    with as_token(policy_client, created["token"]) as am:
        outside = post(am, event())
        above = post(am, event("im.alert.trigger", dataclassification="confidential"))
        rejected = post(am, event("im.alert.trigger", source="/test/x"))
    for r, rule in (
        (outside, "publish-patterns"),
        (above, "producer-clearance"),
        (rejected, "no-test-traffic"),
    ):
        assert r.status_code == 403, r.text
        body = r.json()
        assert body["type"] == "urn:incidents:problem:policy-denied"
        assert body["rule"] == rule and rule in body["detail"]


def test_a_denied_event_in_a_batch_refuses_the_batch(policy_client: httpx.Client) -> None:
    """A batch is judged whole: one denied event means nothing is stored."""
    good, bad = event(), event(source="/test/x")
    r = policy_client.post(
        "/v1/events",
        content=json.dumps([good, bad]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert r.status_code == 403
    assert policy_client.get(f"/v1/events/{good['id']}").status_code == 404


def test_stored_event_carries_the_admitted_labels(policy_client: httpx.Client) -> None:
    """What is stored is the admitted event: defaults, upgrades and the tenant stamp."""
    created = create_principal(policy_client, name="sec", tenant="acme", clearance="restricted")
    ev = event(source="/security/siem")
    with as_token(policy_client, created["token"]) as sec:
        assert post(sec, ev).status_code == 202
    stored = policy_client.get(f"/v1/events/{ev['id']}").json()["event"]
    assert (stored["imdataclass"], stored["imvisibility"], stored["imtenant"]) == (
        "confidential",
        "restricted",
        "acme",
    )


@pytest.mark.parametrize("name", ["imtenant", "imredacted"])
def test_producers_may_not_set_gateway_owned_extensions(
    policy_client: httpx.Client, name: str
) -> None:
    """Setting imtenant or imredacted is a 400 pointing at the attribute."""
    r = post(policy_client, event(**{name: "x"}))
    assert r.status_code == 400
    assert f"/{name}" in [e["pointer"] for e in r.json()["errors"]]
