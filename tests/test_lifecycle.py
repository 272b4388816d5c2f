"""The incident state machine, applied to events one at a time without Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from incidents.errors import IllegalTransition
from incidents.lifecycle.machine import apply
from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import Incident
from incidents.model.severity import Severity
from incidents.model.status import TRANSITIONS, IncidentStatus

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ev(type_: str, data: dict[str, Any] | None = None, **attrs: Any) -> CloudEvent:
    base: dict[str, Any] = {
        "id": f"e-{type_}-{len(attrs)}",
        "source": "/t",
        "specversion": "1.0",
        "type": type_,
        "imincidentid": "INC-1",
        "imtenant": "acme",
    }
    return CloudEvent({**base, **attrs}, data if data is not None else {})


def declared(at: datetime = T0) -> Incident:
    data = {"title": "Checkout down", "severity": "sev-2", "service": "checkout"}
    return apply(None, ev("im.incident.declare", data, time=at.isoformat()), at)


def moved(incident: Incident, status: IncidentStatus, at: datetime) -> Incident:
    return apply(
        incident,
        ev("im.incident.state_change", {"status": status.value, "reason": "test"}),
        at,
    )


def test_declare_creates_version_one_with_default_roles_and_canonical_severity() -> None:
    """A declare builds the incident: open, version 1, SEV2, empty commander/comms/scribe."""
    incident = declared()
    assert incident.status is IncidentStatus.OPEN and incident.version == 1
    assert incident.severity is Severity.SEV2
    assert dict(incident.roles) == {"commander": None, "comms": None, "scribe": None}
    assert incident.tenant == "acme" and incident.declared_at == T0


def test_every_allowed_move_in_the_table_applies() -> None:
    """Each move that TRANSITIONS allows is applied by state_change, setting its timestamp."""
    path = [
        IncidentStatus.MITIGATED,
        IncidentStatus.OPEN,
        IncidentStatus.RESOLVED,
        IncidentStatus.OPEN,
        IncidentStatus.MITIGATED,
        IncidentStatus.RESOLVED,
        IncidentStatus.CLOSED,
    ]
    incident = declared()
    for n, target in enumerate(path, start=1):
        assert incident.status.can_move_to(target)
        incident = moved(incident, target, T0 + timedelta(minutes=n))
        assert incident.status is target and incident.version == n + 1
    assert incident.closed_at == T0 + timedelta(minutes=len(path))


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (start, target)
        for start in IncidentStatus
        for target in IncidentStatus
        if target not in TRANSITIONS[start] and target is not start
    ],
)
def test_moves_outside_the_table_are_refused_with_the_allowed_moves(
    start: IncidentStatus, target: IncidentStatus
) -> None:
    """A move the table lacks raises IllegalTransition listing the moves that are allowed."""
    incident = declared().evolve(status=start)
    with pytest.raises(IllegalTransition) as caught:
        moved(incident, target, T0)
    assert caught.value.extra["allowed"] == sorted(s.value for s in TRANSITIONS[start])
    assert caught.value.extra["incident_status"] == start.value


def test_metrics_measure_from_declaration() -> None:
    """Time to acknowledge, mitigate and resolve are seconds since the declaration."""
    incident = apply(declared(), ev("im.incident.ack"), T0 + timedelta(seconds=30))
    incident = apply(incident, ev("im.incident.mitigate"), T0 + timedelta(seconds=90))
    incident = apply(incident, ev("im.incident.resolve"), T0 + timedelta(seconds=300))
    assert (incident.time_to_acknowledge, incident.time_to_mitigate) == (30.0, 90.0)
    assert incident.time_to_resolve == 300.0


def test_resolving_straight_from_open_also_counts_as_mitigated() -> None:
    """open -> resolved sets mitigated_at too, so time-to-mitigate is never missing."""
    incident = apply(declared(), ev("im.incident.resolve"), T0 + timedelta(seconds=60))
    assert incident.time_to_mitigate == 60.0


def test_recurrence_restarts_the_recovery_clocks() -> None:
    """resolved -> open clears mitigated_at and resolved_at; acknowledged_at stays."""
    incident = apply(declared(), ev("im.incident.ack"), T0 + timedelta(seconds=5))
    incident = apply(incident, ev("im.incident.resolve"), T0 + timedelta(seconds=60))
    incident = moved(incident, IncidentStatus.OPEN, T0 + timedelta(seconds=70))
    assert incident.resolved_at is None and incident.mitigated_at is None
    assert incident.time_to_acknowledge == 5.0


def test_second_ack_keeps_the_first_time() -> None:
    """Acknowledging twice keeps the first acknowledgement (and still counts the event)."""
    incident = apply(declared(), ev("im.incident.ack"), T0 + timedelta(seconds=5))
    again = apply(incident, ev("im.incident.ack"), T0 + timedelta(seconds=50))
    assert again.acknowledged_at == incident.acknowledged_at and again.version == 3


def test_role_assign_sets_the_role() -> None:
    """role_assign names the assignee of a role, adding roles beyond the default three."""
    incident = apply(
        declared(), ev("im.incident.role_assign", {"role": "commander", "assignee": "alice"}), T0
    )
    incident = apply(
        incident, ev("im.incident.role_assign", {"role": "liaison", "assignee": "bob"}), T0
    )
    assert incident.roles["commander"] == "alice" and incident.roles["liaison"] == "bob"


def test_state_change_can_change_severity_alone() -> None:
    """A state_change with only a severity changes the severity and keeps the status."""
    incident = apply(
        declared(), ev("im.incident.state_change", {"severity": "P1", "reason": "worse"}), T0
    )
    assert incident.severity is Severity.SEV1 and incident.status is IncidentStatus.OPEN


def test_closed_is_final_but_still_takes_notes() -> None:
    """On a closed incident every change is refused; a note is still appended."""
    incident = declared().evolve(status=IncidentStatus.CLOSED)
    for type_ in ("im.incident.ack", "im.incident.role_assign", "im.incident.mitigate"):
        with pytest.raises(IllegalTransition):
            apply(incident, ev(type_, {"role": "scribe", "assignee": "c"}), T0)
    assert apply(incident, ev("im.incident.note", {"text": "postmortem"}), T0).version == 2


def test_events_for_an_undeclared_incident_are_refused() -> None:
    """Anything but a declare for an unknown incident is an illegal transition."""
    with pytest.raises(IllegalTransition, match="has not been declared"):
        apply(None, ev("im.incident.note", {"text": "x"}), T0)


def test_declaring_twice_is_refused() -> None:
    """A second declare for the same id is refused."""
    with pytest.raises(IllegalTransition, match="already declared"):
        apply(
            declared(),
            ev("im.incident.declare", {"title": "t", "severity": "SEV1", "service": "s"}),
            T0,
        )
