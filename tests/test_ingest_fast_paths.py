"""The ingest path's shortcuts answer exactly as the full checks do: data schemas, policy
matching remembered per (type, source, tenant), and bodies read without a timer."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message

from incidents.api.toolkit.request_limits import RequestLimits
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry, surely_valid
from incidents.policy.admission import PolicyAdmission
from incidents.policy.files import load_policies
from incidents.policy.rules import Policy

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


def variants(value: Any) -> list[Any]:
    """``value`` and many near misses: wrong kinds, empty, long, float and bool numbers."""
    out: list[Any] = [value, None, True, 1, 1.0, 1.5, -1, "", "x", "x" * 70000, [], {}, [value]]
    if isinstance(value, dict):
        for key, item in value.items():
            for other in variants_leaf(item):
                out.append({**value, key: other})
            out.append({k: v for k, v in value.items() if k != key})
        out.append({**value, "unexpected": "field"})
    return out


def variants_leaf(value: Any) -> list[Any]:
    return [None, True, False, 0, -5, 2.0, 3.5, "", "a", "SEV1", "x" * 301, [], {}, ["a"], value]


def examples(schema: dict[str, Any]) -> dict[str, Any]:
    """A plausible instance: every property with a value of its declared type."""
    out: dict[str, Any] = {}
    for name, sub in schema.get("properties", {}).items():
        kind = sub.get("type")
        kind = kind[0] if isinstance(kind, list) else kind
        out[name] = {
            "string": (sub.get("enum") or ["value"])[0],
            "integer": 1,
            "number": 1,
            "boolean": True,
            "array": [],
            "object": {},
        }.get(kind, "value")
    return out


def test_fast_data_check_never_accepts_what_json_schema_refuses() -> None:
    """For every event schema, the fast check says valid only for data jsonschema accepts."""
    registry = SchemaRegistry.load(SCHEMAS)
    checked = 0
    for event_type in registry.event_types:
        schema = json.loads((SCHEMAS / "events" / f"{event_type}.json").read_text())
        fast = surely_valid(schema)
        assert fast is not None, f"{event_type} gets no fast check"
        validator = registry.compile(SCHEMAS / "events" / f"{event_type}.json")
        for instance in variants(examples(schema)):
            if fast(instance):
                assert validator.is_valid(instance), (event_type, instance)
            assert (registry.data_errors(event_type, instance) == []) == validator.is_valid(
                instance
            )
            checked += 1
    assert checked > 100


def test_fast_data_check_accepts_common_data_and_declines_unknown_keywords() -> None:
    """A note's data passes without jsonschema; a schema with an unknown keyword gets none."""
    note = json.loads((SCHEMAS / "events" / "im.incident.note.json").read_text())
    fast = surely_valid(note)
    assert fast is not None and fast({"text": "x" * 800})
    assert not fast({"text": ""}) and not fast({"title": "no text"})
    assert surely_valid({"type": "object", "if": {"required": ["a"]}}) is None
    assert surely_valid({"type": "string", "enum": ["a", 1]}) is None


POLICY = """
defaults:
  - name: security-source
    match: {source: "/security/*"}
    dataclass: confidential
    visibility: restricted
rules:
  - name: payments
    match:
      type: "im.incident.*"
      data: {service: "payments-*"}
    require: {dataclass: confidential}
  - name: red-team
    match:
      data: {labels.team: ["red"]}
    require: {visibility: restricted}
  - name: no-test
    match: {source: "/test/*"}
    reject: not here
"""


def test_remembered_policy_matches_still_follow_each_events_data(tmp_path: Path) -> None:
    """The same type, source and tenant with different data gets each event's own labels."""
    (tmp_path / "p.yaml").write_text(POLICY)
    policy: Policy = load_policies(tmp_path, SCHEMAS)
    admission = PolicyAdmission(policy)
    who = Principal("prn_1", "tool", frozenset({"producer"}), "acme", "confidential", False, ("*",))
    datas: list[dict[str, Any]] = [
        {"title": "t", "severity": "SEV2", "service": "payments-api"},
        {"title": "t", "severity": "SEV2", "service": "search"},
        {"title": "t", "severity": "SEV2", "service": "x", "labels": {"team": "red"}},
    ]
    for _ in range(2):
        for source in ("/monitor", "/security/ids"):
            for data in datas:
                ev = CloudEvent(
                    {
                        "specversion": "1.0",
                        "id": "1",
                        "source": source,
                        "type": "im.incident.declare",
                    },
                    copy.deepcopy(data),
                )
                got = admission.admit(ev, who)
                defaults = policy.default_labels(ev.type, source, "acme", data)
                cls, vis = defaults[0], defaults[1]
                for rule in policy.matching_rules(ev.type, source, "acme", data):
                    cls = cls.stricter(rule.data_class) if rule.data_class else cls
                    vis = vis.stricter(rule.visibility) if rule.visibility else vis
                assert (got.get("imdataclass"), got.get("imvisibility")) == (cls.value, vis.value)
    assert len(admission._candidates) == 2


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    await send({"type": "done", "message": message})


@pytest.mark.parametrize("waits", [False, True])
def test_body_deadline_holds_whether_or_not_the_body_is_already_there(waits: bool) -> None:
    """A body already received passes at once; one that never comes is a BodyTimeout."""
    from incidents.errors import BodyTimeout

    async def run() -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            if waits:
                await asyncio.sleep(3600)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        limits = RequestLimits(echo_app, max_header_bytes=1000, body_timeout=0.05)
        await limits({"type": "http", "headers": [], "path": "/"}, receive, send)
        return sent

    if waits:
        with pytest.raises(BodyTimeout):
            asyncio.run(run())
    else:
        assert asyncio.run(run())[0]["message"]["body"] == b"{}"


def test_latency_histogram_counts_each_request_once_and_renders_cumulative() -> None:
    """Each request lands in one bucket; the rendered le= buckets still count up to +Inf."""
    from incidents.metrics import Metrics

    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 9.0):
        metrics.observe("POST", "/v1/events", 202, seconds)
    assert sum(metrics.latency_buckets.values()) == 4  # 9 s is beyond the last bucket

    rendered = {
        bound: sum(n for (r, b), n in metrics.latency_buckets.items() if b <= bound)
        for bound in Metrics.BUCKETS
    }
    assert rendered[0.001] == 1 and rendered[0.005] == 3 and rendered[0.25] == 4
