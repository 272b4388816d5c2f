"""The seed model: severities, statuses, event types, incidents and their timelines."""

from __future__ import annotations

from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import Incident, TimelineEvent
from incidents.model.severity import Severity
from incidents.model.status import TRANSITIONS, IncidentStatus
from incidents.model.types import EventType, Extension

__all__ = [
    "TRANSITIONS",
    "CloudEvent",
    "EventType",
    "Extension",
    "Incident",
    "IncidentStatus",
    "Severity",
    "TimelineEvent",
]
