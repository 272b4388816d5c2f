"""The visibility table: for every data class x visibility x tenant x clearance x restricted
access, whether an event is delivered (and which fields are removed) or withheld (and by
which rule). test_visibility_table.py checks the policy against it, test_visibility_e2e.py
the whole gateway."""

from __future__ import annotations

import itertools
from typing import Any

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
