"""Every data class x visibility x tenant x clearance x restricted access, judged exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.policy.outbound import judge
from tests.visibility_table import CASES, DATA, PRODUCER_TENANT, Case, case_id, expected

ROOT = Path(__file__).resolve().parent.parent


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
