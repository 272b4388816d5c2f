"""Every data class x visibility x tenant x clearance x restricted access, judged exactly."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from incidents.auth import Principal
from incidents.model.cloudevent import CloudEvent
from incidents.model.schemas import SchemaRegistry
from incidents.policy.outbound import judge

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("public", "internal", "confidential", "restricted")
VISIBILITIES = ("public", "internal", "restricted")
PRODUCER_TENANT = "acme"

# Who may see a visibility: (visibility, same tenant, restricted access) -> withholding rule.
SIGHT: dict[tuple[str, bool, bool], str | None] = {
    ("public", True, False): None,
    ("public", True, True): None,
    ("public", False, False): None,
    ("public", False, True): None,
    ("internal", True, False): None,
    ("internal", True, True): None,
    ("internal", False, False): "visibility-internal",
    ("internal", False, True): "visibility-internal",
    ("restricted", True, False): "visibility-restricted",
    ("restricted", True, True): None,
    ("restricted", False, False): "visibility-restricted",
    ("restricted", False, True): "visibility-restricted",
}
# Which data classes a clearance covers.
COVERS: dict[str, frozenset[str]] = {
    "public": frozenset({"public"}),
    "internal": frozenset({"public", "internal"}),
    "confidential": frozenset({"public", "internal", "confidential"}),
    "restricted": frozenset(CLASSES),
}
# im.incident.declare marks summary confidential and customer_impact restricted.
REMOVED: dict[str, tuple[str, ...]] = {
    "public": ("/summary", "/customer_impact"),
    "internal": ("/summary", "/customer_impact"),
    "confidential": ("/customer_impact",),
    "restricted": (),
}
DATA: dict[str, Any] = {
    "title": "Card payments failing",
    "severity": "SEV1",
    "service": "payments",
    "summary": "3% of card payments fail at the acquirer",
    "customer_impact": "ACME Corp and Globex cannot check out",
}

Case = tuple[str, str, bool, str, bool]
CASES: list[Case] = list(
    itertools.product(CLASSES, VISIBILITIES, (True, False), CLASSES, (True, False))
)


def case_id(case: Case) -> str:
    data_class, visibility, same, clearance, restricted = case
    return (
        f"{data_class}-{visibility}-{'same' if same else 'other'}-"
        f"clear_{clearance}-{'ra' if restricted else 'nora'}"
    )


def expected(case: Case) -> tuple[str, str | tuple[str, ...]]:
    """('withhold', rule) or ('deliver', removed JSON pointers), from the tables above."""
    data_class, visibility, same, clearance, restricted = case
    rule = SIGHT[(visibility, same, restricted)]
    if rule is not None:
        return "withhold", rule
    if data_class not in COVERS[clearance]:
        return "withhold", "clearance"
    return "deliver", REMOVED[clearance]


def subscriber(same: bool, clearance: str, restricted: bool) -> Principal:
    return Principal(
        id=f"prn_{int(same)}{clearance}{int(restricted)}",
        name=f"sub-{clearance}",
        roles=frozenset({"subscriber"}),
        tenant=PRODUCER_TENANT if same else "globex",
        clearance=clearance,
        restricted=restricted,
    )


def labelled_event(data_class: str, visibility: str) -> CloudEvent:
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": f"e-{data_class}-{visibility}",
            "source": "/tests",
            "type": "im.incident.declare",
            "imdataclass": data_class,
            "imvisibility": visibility,
            "imtenant": PRODUCER_TENANT,
        },
        dict(DATA),
    )


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load(ROOT / "schemas")


def test_the_table_covers_every_combination() -> None:
    """4 data classes x 3 visibilities x 2 tenants x 4 clearances x 2 = 192 cases."""
    assert len(CASES) == 192 == len(set(CASES))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_judge_matches_the_table(case: Case, registry: SchemaRegistry) -> None:
    """judge delivers, redacts or withholds exactly as the table says, naming the rule."""
    data_class, visibility, same, clearance, restricted = case
    verdict = judge(
        labelled_event(data_class, visibility), subscriber(same, clearance, restricted), registry
    )
    outcome, detail = expected(case)
    if outcome == "withhold":
        assert not verdict.deliver and verdict.event is None
        assert verdict.rule == detail
        return
    assert verdict.deliver and verdict.event is not None
    assert verdict.redacted == detail
    sent = verdict.event.to_dict()
    assert set(sent["data"]) == {k for k in DATA if f"/{k}" not in detail}
    if detail:
        assert verdict.rule == "field-clearance"
        assert sent["imredacted"] == ",".join(detail)
    else:
        assert verdict.rule == "" and "imredacted" not in sent
