"""What planning decided about an accepted event, kept with it in the store.

Alert correlation fills it in; delivery reads ``fanout`` (whether subscribers hear about the
event) and the read APIs show it. It is stored, and returned by ``GET /v1/events/{id}``, as
the ``meta`` JSON object: ``{"alert": {...}, "fanout": false}``, with ``fanout`` written only
when it is false and ``alert`` only for alert events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class AlertOutcome(StrEnum):
    """What an ``im.alert.*`` event did to its alert."""

    OPENED = "opened"
    DEDUPLICATED = "deduplicated"
    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    ACKNOWLEDGED = "acknowledged"
    UNCHANGED = "unchanged"
    RESOLVED = "resolved"
    IGNORED = "ignored"

    @property
    def quiet(self) -> bool:
        """Nothing a subscriber needs to hear about: the event is not fanned out."""
        return self in _QUIET


_QUIET = frozenset({AlertOutcome.DEDUPLICATED, AlertOutcome.UNCHANGED, AlertOutcome.IGNORED})


class LinkedBy(StrEnum):
    """Who tied an alert event to its incident: the producer (``imincidentid``) or the
    gateway (the alert's incident, or one it declared)."""

    EVENT = "event"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class AlertState:
    """The alert after the event (absent when the event was ignored)."""

    number: int
    status: str  # firing, acknowledged or resolved
    count: int
    incident: str | None  # the incident the alert belongs to, if any


@dataclass(frozen=True)
class AlertPlan:
    key: str  # the correlation key
    outcome: AlertOutcome
    declared: str | None = None  # the incident this event declared
    linked_by: LinkedBy | None = None
    alert: AlertState | None = None
    reason: str | None = None  # why an ignored event changed nothing

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"key": self.key, "outcome": self.outcome.value}
        if self.declared is not None:
            out["declared"] = self.declared
        if self.linked_by is not None:
            out["linked_by"] = self.linked_by.value
        if self.alert is not None:
            out["number"] = self.alert.number
            out["status"] = self.alert.status
            out["count"] = self.alert.count
            out["incident"] = self.alert.incident
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> AlertPlan:
        number, count, incident = raw.get("number"), raw.get("count"), raw.get("incident")
        alert = None
        if isinstance(number, int) and isinstance(count, int):
            alert = AlertState(
                number, str(raw.get("status", "")), count, str(incident) if incident else None
            )
        linked_by, declared, reason = raw.get("linked_by"), raw.get("declared"), raw.get("reason")
        return cls(
            key=str(raw.get("key", "")),
            outcome=AlertOutcome(str(raw.get("outcome"))),
            declared=str(declared) if declared else None,
            linked_by=LinkedBy(str(linked_by)) if linked_by else None,
            alert=alert,
            reason=str(reason) if reason is not None else None,
        )


@dataclass(frozen=True)
class Plan:
    fanout: bool = True  # False: subscribers do not hear about this event
    alert: AlertPlan | None = None

    def to_dict(self) -> dict[str, object]:
        """The stored ``meta`` object."""
        out: dict[str, object] = {}
        if self.alert is not None:
            out["alert"] = self.alert.to_dict()
        if not self.fanout:
            out["fanout"] = False
        return out

    @classmethod
    def from_dict(cls, raw: object) -> Plan:
        """A stored ``meta`` object (``{}`` or missing for most events)."""
        if not isinstance(raw, Mapping) or not raw:
            return NO_PLAN
        alert = raw.get("alert")
        return cls(
            fanout=raw.get("fanout", True) is not False,
            alert=AlertPlan.from_dict(alert) if isinstance(alert, Mapping) and alert else None,
        )


NO_PLAN = Plan()
