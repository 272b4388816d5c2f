"""Field-level redaction: remove the data fields a schema marks above a clearance.

A redacted event says so in the gateway-owned extension ``imredacted``: the removed fields as
RFC 6901 JSON pointers into ``data``, comma-separated (a comma inside a field name is written
``%2C``), e.g. ``imredacted: /summary,/customer_impact``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from incidents.errors import pointer
from incidents.model.schemas import MarkedField
from incidents.policy.access import covers


def fields_above(marked: Iterable[MarkedField], clearance: str) -> list[MarkedField]:
    """The marked fields a principal with ``clearance`` may not receive, shallowest first."""
    return sorted(
        (f for f in marked if not covers(clearance, f.data_class)), key=lambda f: len(f.path)
    )


def redact(data: object, marked: Iterable[MarkedField], clearance: str) -> tuple[object, list[str]]:
    """A copy of ``data`` without the fields above ``clearance``, and their JSON pointers.

    Only fields actually present are reported. ``data`` itself is never changed.
    """
    hidden = fields_above(marked, clearance)
    if not hidden or not isinstance(data, dict):
        return data, []
    out = copy.deepcopy(data)
    removed: list[str] = []
    for field in hidden:
        parent: object = out
        for part in field.path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and field.path[-1] in parent:
            del parent[field.path[-1]]
            removed.append(pointer(*field.path))
    return out, removed


def redacted_header(pointers: Iterable[str]) -> str:
    """The ``imredacted`` value for a list of removed fields."""
    return ",".join(p.replace("%", "%25").replace(",", "%2C") for p in pointers)


def parse_redacted(value: str) -> list[str]:
    """The JSON pointers listed in an ``imredacted`` value."""
    return [p.replace("%2C", ",").replace("%25", "%") for p in value.split(",") if p]
