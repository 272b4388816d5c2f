"""Incident context on every event: ``imseverity``, ``imstatus`` and ``imservice``.

The gateway stamps them at acceptance on every ``im.incident.*`` and ``im.alert.*`` event,
from the state planning left: the incident after the event (an ack or a note carries the
incident's severity, status and service too), or, for an alert event, the alert after it (its
status is ``firing``, ``acknowledged`` or ``resolved``; its service comes from its labels).
An attribute with no value (an incident without a service) is left out. Producers may not set
them (``Extension.GATEWAY_OWNED``): filters and silences can trust what they say.
"""

from __future__ import annotations

from collections.abc import Mapping

from incidents.model.alert import Alert, service_of, strings
from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import Incident
from incidents.model.severity import Severity
from incidents.model.types import Extension


def _stamped(event: CloudEvent, severity: str, status: str, service: str) -> CloudEvent:
    # None removes an attribute: a stamp from an earlier planning attempt never lingers.
    return event.with_attributes(
        **{
            Extension.SEVERITY: severity or None,
            Extension.STATUS: status or None,
            Extension.SERVICE: service or None,
        }
    )


def with_incident_context(event: CloudEvent, incident: Incident) -> CloudEvent:
    """``event`` stamped with ``incident``'s state (the incident after the event)."""
    return _stamped(event, incident.severity.value, incident.status.value, incident.service)


def with_alert_context(event: CloudEvent, alert: Alert | None) -> CloudEvent:
    """``event`` stamped with ``alert``'s state after it; an event that changed no alert (an
    ack with nothing open) carries what its own data says: a severity and a service label."""
    if alert is not None:
        return _stamped(event, alert.severity, alert.status, alert.service)
    data = event.data if isinstance(event.data, Mapping) else {}
    try:
        severity = Severity.parse(data.get("severity")).value
    except ValueError:
        severity = ""
    return _stamped(event, severity, "", service_of(strings(data.get("labels"))))
