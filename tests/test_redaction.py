"""Field-level redaction: marked fields above the clearance are removed, nested ones too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from incidents.model.cloudevent import CloudEvent
from incidents.model.labels import DataClass
from incidents.model.principal import Principal, admin_principal
from incidents.model.schemas import MarkedField, SchemaRegistry
from incidents.policy.outbound import judge
from incidents.policy.redaction import parse_redacted, redact, redacted_header

ROOT = Path(__file__).resolve().parent.parent
NESTED_TYPE = "im.test.nested"
NESTED_SCHEMA = {
    "x-event-type": NESTED_TYPE,
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "customer": {
            "type": "object",
            "x-dataclass": "confidential",
            "properties": {
                "name": {"type": "string"},
                "account": {"type": "string", "x-dataclass": "restricted"},
            },
        },
        "ops": {
            "type": "object",
            "properties": {
                "runbook": {"type": "string"},
                "pager": {
                    "type": "object",
                    "properties": {"phone": {"type": "string", "x-dataclass": "confidential"}},
                },
            },
        },
    },
}
NESTED_DATA: dict[str, Any] = {
    "title": "t",
    "customer": {"name": "ACME", "account": "4711"},
    "ops": {"runbook": "r", "pager": {"phone": "+1 555", "team": "sre"}},
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    """The real schemas plus one test type with nested marked fields."""
    d = tmp_path_factory.mktemp("schemas")
    shutil.copytree(ROOT / "schemas", d, dirs_exist_ok=True)
    (d / "events" / f"{NESTED_TYPE}.json").write_text(json.dumps(NESTED_SCHEMA))
    return SchemaRegistry.load(d)


def nested_event(**attrs: Any) -> CloudEvent:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "n-1",
        "source": "/tests",
        "type": NESTED_TYPE,
        "imdataclass": "public",
        "imvisibility": "public",
        "imtenant": "acme",
    }
    base.update(attrs)
    return CloudEvent(base, json.loads(json.dumps(NESTED_DATA)))


def reader(clearance: str, **kw: Any) -> Principal:
    return Principal(
        id="prn_r",
        name="r",
        roles=frozenset({"subscriber"}),
        tenant="acme",
        clearance=clearance,
        **kw,
    )


def test_registry_reports_nested_marks(registry: SchemaRegistry) -> None:
    """The schema's nested x-dataclass marks are known by their full paths."""
    assert set(registry.marked_fields(NESTED_TYPE)) == {
        MarkedField(("customer",), DataClass.CONFIDENTIAL),
        MarkedField(("customer", "account"), DataClass.RESTRICTED),
        MarkedField(("ops", "pager", "phone"), DataClass.CONFIDENTIAL),
    }


@pytest.mark.parametrize(
    ("clearance", "removed"),
    [
        ("public", ("/customer", "/ops/pager/phone")),
        ("internal", ("/customer", "/ops/pager/phone")),
        ("confidential", ("/customer/account",)),
        ("restricted", ()),
    ],
)
def test_nested_fields_are_removed_by_clearance(
    registry: SchemaRegistry, clearance: str, removed: tuple[str, ...]
) -> None:
    """A marked object goes whole; a marked leaf deep inside goes alone; siblings stay."""
    verdict = judge(nested_event(), reader(clearance), registry)
    assert verdict.deliver and verdict.event is not None
    assert verdict.redacted == removed
    data = verdict.event.data
    assert data["ops"]["runbook"] == "r" and data["ops"]["pager"]["team"] == "sre"
    assert ("customer" in data) == (clearance in ("confidential", "restricted"))
    if removed:
        assert parse_redacted(str(verdict.event.get("imredacted"))) == list(removed)


def test_the_stored_event_is_never_changed(registry: SchemaRegistry) -> None:
    """Redaction works on a copy; the original event's data is untouched."""
    ev = nested_event()
    judge(ev, reader("public"), registry)
    assert ev.data == NESTED_DATA and ev.get("imredacted") is None


def test_absent_marked_fields_are_not_reported(registry: SchemaRegistry) -> None:
    """Only fields actually present are removed and listed; none present means no mark."""
    ev = nested_event().with_data({"title": "only this"})
    verdict = judge(ev, reader("public"), registry)
    assert verdict.event == ev and verdict.redacted == () and verdict.rule == ""


def test_non_object_data_passes_through() -> None:
    """Data that is not an object (or is absent) has no fields to remove."""
    marks = [MarkedField(("a",), DataClass.RESTRICTED)]
    assert redact(None, marks, "public") == (None, [])
    assert redact(["a"], marks, "public") == (["a"], [])


def test_redacted_header_escapes_commas() -> None:
    """Field names with commas or percent signs survive the comma-separated list."""
    pointers = ["/a,b", "/100%", "/plain"]
    assert parse_redacted(redacted_header(pointers)) == pointers


def test_admins_cross_tenants_but_not_their_clearance(registry: SchemaRegistry) -> None:
    """An admin sees other tenants' internal events, yet a low-clearance admin is still
    held to its clearance."""
    ev = nested_event(imvisibility="restricted", imdataclass="confidential", imtenant="globex")
    assert judge(ev, admin_principal(), registry).redacted == ()
    low_admin = Principal(
        id="prn_a", name="a", roles=frozenset({"admin"}), clearance="internal", restricted=True
    )
    assert judge(ev, low_admin, registry).rule == "clearance"


@pytest.mark.parametrize(
    ("attrs", "rule"),
    [
        ({"imdataclass": "secret"}, "unknown-label"),
        ({"imvisibility": "everyone"}, "unknown-label"),
        ({"imtenant": None, "imvisibility": "internal"}, "visibility-internal"),
    ],
)
def test_odd_labels_are_withheld(
    registry: SchemaRegistry, attrs: dict[str, Any], rule: str
) -> None:
    """Labels outside the vocabulary, or an internal event with no tenant, are withheld."""
    ev = nested_event().with_attributes(**attrs)
    verdict = judge(ev, reader("restricted", restricted=True), registry)
    assert not verdict.deliver and verdict.rule == rule and verdict.reason.startswith(rule)


def test_missing_labels_mean_internal(registry: SchemaRegistry) -> None:
    """An event without labels is judged as internal/internal."""
    ev = nested_event().with_attributes(imdataclass=None, imvisibility=None)
    assert judge(ev, reader("internal"), registry).deliver
    assert judge(ev, reader("public"), registry).rule == "clearance"
