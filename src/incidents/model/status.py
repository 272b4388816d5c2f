from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class IncidentStatus(StrEnum):
    OPEN = "open"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @classmethod
    def parse(cls, raw: object) -> IncidentStatus:
        if isinstance(raw, str):
            try:
                return cls(raw.strip().lower())
            except ValueError:
                pass
        allowed = ", ".join(s.value for s in cls)
        raise ValueError(f"{raw!r} is not an incident status (expected one of {allowed})")

    def allowed_moves(self) -> frozenset[IncidentStatus]:
        return TRANSITIONS[self]

    def can_move_to(self, target: IncidentStatus) -> bool:
        return target in TRANSITIONS[self]


# The transition table, as data. ``closed`` is final.
TRANSITIONS: Mapping[IncidentStatus, frozenset[IncidentStatus]] = MappingProxyType(
    {
        IncidentStatus.OPEN: frozenset({IncidentStatus.MITIGATED, IncidentStatus.RESOLVED}),
        IncidentStatus.MITIGATED: frozenset({IncidentStatus.RESOLVED, IncidentStatus.OPEN}),
        IncidentStatus.RESOLVED: frozenset({IncidentStatus.OPEN, IncidentStatus.CLOSED}),
        IncidentStatus.CLOSED: frozenset(),
    }
)
