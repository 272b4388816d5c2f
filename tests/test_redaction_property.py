"""Property: no subscriber ever receives a field marked above its clearance, whatever the
event, its labels, the policy, and the subscriber."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from incidents.errors import PolicyDenied
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.policy.access import covers
from incidents.policy.admission import PolicyAdmission
from incidents.policy.outbound import judge
from incidents.policy.rules import Default, Match, Policy, Rule

ROOT = Path(__file__).resolve().parent.parent
EVENT_TYPE = "im.test.property"
CLASSES = ("public", "internal", "confidential", "restricted")
VISIBILITIES = ("public", "internal", "restricted")
NAMES = st.sampled_from(["a", "b", "c", "summary", "impact", "x-y", "n,m"])
MARK = st.one_of(st.none(), st.sampled_from(CLASSES))

SchemaNode = dict[str, Any]


def schema_nodes(depth: int) -> st.SearchStrategy[SchemaNode]:
    """A JSON Schema property: a string leaf or an object of further properties, maybe marked."""
    leaf = st.builds(lambda m: {"type": "string", **({"x-dataclass": m} if m else {})}, MARK)
    if depth == 0:
        return leaf
    obj = st.builds(
        lambda props, m: {
            "type": "object",
            "properties": props,
            **({"x-dataclass": m} if m else {}),
        },
        st.dictionaries(NAMES, schema_nodes(depth - 1), max_size=3),
        MARK,
    )
    return st.one_of(leaf, obj)


@st.composite
def data_for(draw: st.DrawFn, node: SchemaNode, counter: itertools.count[int]) -> Any:
    """Data shaped by the schema (fields present or not, plus unknown extras); every leaf
    value is a unique token so leaks can be found in the delivered JSON."""
    if node["type"] == "string":
        return f"<<v{next(counter)}>>"
    out: dict[str, Any] = {}
    for name, child in node["properties"].items():
        if draw(st.booleans()) or draw(st.booleans()):
            out[name] = draw(data_for(child, counter))
    if draw(st.booleans()):
        out["extra"] = f"<<v{next(counter)}>>"
    return out


def hidden_tokens(node: SchemaNode, value: Any, clearance: str, hidden: bool = False) -> set[str]:
    """Tokens in ``value`` that sit at or under a field marked above ``clearance``."""
    mark = node.get("x-dataclass")
    hidden = hidden or (mark is not None and not covers(clearance, mark))
    if node["type"] == "string" or not isinstance(value, dict):
        return {value} if hidden and isinstance(value, str) else set()
    found: set[str] = set()
    for name, child in node["properties"].items():
        if name in value:
            found |= hidden_tokens(child, value[name], clearance, hidden)
    return found


matches = st.builds(
    Match,
    types=st.sampled_from([(), ("im.test.*",), ("im.other",)]),
    data=st.sampled_from([(), ((("a",), ("*",)),), ((("b", "c"), ("<<v*",)),)]),
)
policies = st.builds(
    Policy,
    defaults=st.lists(
        st.builds(Default, matches, st.sampled_from(CLASSES), st.sampled_from(VISIBILITIES)),
        max_size=2,
    ).map(tuple),
    rules=st.lists(
        st.builds(
            Rule,
            name=st.sampled_from(["r1", "r2", "r3"]),
            match=matches,
            data_class=st.sampled_from(CLASSES),
            visibility=st.one_of(st.none(), st.sampled_from(VISIBILITIES)),
        ),
        max_size=3,
    ).map(tuple),
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    root: SchemaNode = {
        "type": "object",
        "properties": draw(st.dictionaries(NAMES, schema_nodes(2), min_size=1, max_size=4)),
    }
    return {
        "schema": root,
        "data": draw(data_for(root, itertools.count())),
        "policy": draw(policies),
        "labels": {
            "imdataclass": draw(st.one_of(st.none(), st.sampled_from(CLASSES))),
            "imvisibility": draw(st.one_of(st.none(), st.sampled_from(VISIBILITIES))),
        },
        "producer_clearance": draw(st.sampled_from(CLASSES)),
        "subscriber": Principal(
            id="prn_s",
            name="s",
            roles=frozenset({"subscriber"}),
            tenant=draw(st.sampled_from(["acme", "globex"])),
            clearance=draw(st.sampled_from(CLASSES)),
            restricted=draw(st.booleans()),
        ),
    }


def registry_with(schema: SchemaNode, workdir: Path) -> SchemaRegistry:
    """The envelope schema plus the drawn data schema, loaded as the gateway loads schemas."""
    if not (workdir / "cloudevent.json").exists():
        (workdir / "events").mkdir(parents=True)
        shutil.copy(ROOT / "schemas" / "cloudevent.json", workdir)
    (workdir / "events" / f"{EVENT_TYPE}.json").write_text(
        json.dumps({"x-event-type": EVENT_TYPE, **schema})
    )
    return SchemaRegistry.load(workdir)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property-schemas")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_subscriber_receives_a_field_above_its_clearance(
    workdir: Path, scenario: dict[str, Any]
) -> None:
    """Through admission and judging, a delivered event never holds a field marked above the
    subscriber's clearance, nor is it itself above that clearance."""
    registry = registry_with(scenario["schema"], workdir)
    producer = Principal(
        id="prn_p",
        name="p",
        roles=frozenset({"producer"}),
        tenant="acme",
        clearance=scenario["producer_clearance"],
        publish=("im.*",),
    )
    attrs = {"specversion": "1.0", "id": "1", "source": "/p", "type": EVENT_TYPE}
    attrs.update({k: v for k, v in scenario["labels"].items() if v is not None})
    try:
        admitted = PolicyAdmission(scenario["policy"]).admit(
            CloudEvent(attrs, scenario["data"]), producer
        )
    except PolicyDenied:
        assume(False)
        return
    subscriber: Principal = scenario["subscriber"]
    verdict = judge(admitted, subscriber, registry)
    if not verdict.deliver:
        assert verdict.event is None and verdict.rule
        return
    assert verdict.event is not None
    assert covers(subscriber.clearance, str(admitted.get("imdataclass")))
    wire = json.dumps(verdict.event.to_dict())
    leaked = {
        t
        for t in hidden_tokens(scenario["schema"], scenario["data"], subscriber.clearance)
        if t in wire
    }
    assert not leaked, f"{leaked} reached a {subscriber.clearance} subscriber: {wire}"
    for field in registry.marked_fields(EVENT_TYPE):
        if not covers(subscriber.clearance, field.data_class):
            node: Any = verdict.event.data
            for part in field.path[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            assert not (isinstance(node, dict) and field.path[-1] in node)
