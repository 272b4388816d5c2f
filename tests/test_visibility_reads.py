"""The read APIs apply the delivery rule to the caller: visibility, clearance, redaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.policy.access import may_see
from incidents.queries.visibility import Viewer
from tests.support import as_token, create_principal, event

ROOT = Path(__file__).resolve().parent.parent
CE_JSON = {"Content-Type": "application/cloudevents+json"}


def principal(tenant: str, clearance: str, restricted: bool = False) -> Principal:
    return Principal(
        id="prn_x",
        name="x",
        roles=frozenset({"subscriber"}),
        tenant=tenant,
        clearance=clearance,
        restricted=restricted,
    )


def stored(**labels: Any) -> StoredEvent:
    raw = event(
        data={
            "title": "t",
            "severity": "SEV1",
            "service": "s",
            "summary": "confidential words",
            "customer_impact": "restricted words",
        },
        imtenant="acme",
        **labels,
    )
    return StoredEvent(CloudEvent.from_dict(raw), 7, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load(ROOT / "schemas")


def visible_event(
    who: Principal, s: StoredEvent, registry: SchemaRegistry
) -> dict[str, Any] | None:
    seen = Viewer(who, registry).event(s)
    return None if seen is None else seen.to_dict()


def test_visible_event_redacts_for_the_caller(registry: SchemaRegistry) -> None:
    """A reader gets the stored event minus fields above its clearance, marked imredacted."""
    s = stored(imdataclass="internal", imvisibility="internal")
    seen = visible_event(principal("acme", "confidential"), s, registry)
    assert seen is not None and seen["sequence"] == 7
    assert "customer_impact" not in seen["event"]["data"]
    assert seen["event"]["data"]["summary"] == "confidential words"
    assert seen["event"]["imredacted"] == "/customer_impact"
    full = visible_event(principal("acme", "restricted"), s, registry)
    assert full is not None and "imredacted" not in full["event"]


def test_visible_event_hides_what_the_caller_may_not_see(registry: SchemaRegistry) -> None:
    """Another tenant, a low clearance or missing restricted access hides the event."""
    internal = stored(imdataclass="internal", imvisibility="internal")
    secret = stored(imdataclass="confidential", imvisibility="restricted")
    assert visible_event(principal("globex", "restricted", True), internal, registry) is None
    assert visible_event(principal("acme", "internal", True), secret, registry) is None
    assert visible_event(principal("acme", "restricted"), secret, registry) is None
    assert visible_event(principal("acme", "restricted", True), secret, registry) is not None
    assert not Viewer(principal("globex", "restricted", True), registry).may_read(internal)
    assert Viewer(principal("acme", "internal"), registry).may_read(internal)


def test_may_see_incident_follows_the_same_rule() -> None:
    """Incident visibility uses the same tenant, visibility and clearance rule as delivery."""
    acme = principal("acme", "confidential")
    assert may_see(acme, "acme", "internal", "confidential")
    assert not may_see(acme, "acme", "internal", "restricted")
    assert not may_see(acme, "acme", "restricted", "internal")
    assert not may_see(principal("globex", "restricted", True), "acme", "internal", "public")
    assert may_see(principal("globex", "public"), "acme", "public", "public")


def test_visible_data_redacts_documents_by_type(registry: SchemaRegistry) -> None:
    """A document derived from an event type is redacted with that type's marks."""
    viewer = Viewer(principal("acme", "internal"), registry)
    data, removed = viewer.data({"title": "t", "summary": "s"}, "im.incident.declare")
    assert data == {"title": "t"} and removed == ["/summary"]


def test_get_event_is_filtered_by_policy(client: httpx.Client) -> None:
    """GET /v1/events/{id} answers 404 to callers who may not see the event."""
    prod = create_principal(client, name="prod", tenant="acme", clearance="restricted")
    readers = {
        "acme-internal": create_principal(
            client, name="r1", roles=["subscriber"], tenant="acme", clearance="internal"
        ),
        "acme-full": create_principal(
            client,
            name="r2",
            roles=["subscriber"],
            tenant="acme",
            clearance="restricted",
            restricted=True,
        ),
        "globex-full": create_principal(
            client,
            name="r3",
            roles=["subscriber"],
            tenant="globex",
            clearance="restricted",
            restricted=True,
        ),
    }
    events = {
        "public": event(imdataclass="public", imvisibility="public"),
        "internal": event(),
        "secret": event(imdataclass="confidential", imvisibility="restricted"),
    }
    with as_token(client, prod["token"]) as p:
        for ev in events.values():
            assert p.post("/v1/events", content=json.dumps(ev), headers=CE_JSON).status_code == 202
    expected = {
        ("acme-internal", "public"): 200,
        ("acme-internal", "internal"): 200,
        ("acme-internal", "secret"): 404,
        ("acme-full", "public"): 200,
        ("acme-full", "internal"): 200,
        ("acme-full", "secret"): 200,
        ("globex-full", "public"): 200,
        ("globex-full", "internal"): 404,
        ("globex-full", "secret"): 404,
    }
    got = {}
    for who, created in readers.items():
        with as_token(client, created["token"]) as r:
            for what, ev in events.items():
                got[(who, what)] = r.get(f"/v1/events/{ev['id']}").status_code
    assert got == expected


def test_readable_keeps_the_stored_event_when_nothing_is_hidden(registry: SchemaRegistry) -> None:
    """A caller cleared for everything gets the very stored event back, unchanged."""
    s = stored(imdataclass="internal", imvisibility="internal")
    assert Viewer(principal("acme", "restricted"), registry).event(s) is s
    redacted = Viewer(principal("acme", "internal"), registry).event(s)
    assert redacted is not None and redacted.sequence == s.sequence
    assert redacted.event.get("imredacted") == "/summary,/customer_impact"


def test_visible_incident_drops_marked_fields(registry: SchemaRegistry) -> None:
    """An incident's summary (confidential in the declare schema) is hidden from internal
    readers, and the document says so."""
    doc = {"id": "INC-1", "title": "t", "summary": "impact", "status": "open"}
    low = Viewer(principal("acme", "internal"), registry).incident_document(doc)
    assert low == {"id": "INC-1", "title": "t", "status": "open", "redacted": ["/summary"]}
    assert Viewer(principal("acme", "confidential"), registry).incident_document(doc) == doc
