"""Event-type and extension-attribute names: the wire vocabulary."""

from __future__ import annotations

from typing import Final


class EventType:
    INCIDENT_DECLARE: Final = "im.incident.declare"
    INCIDENT_ACK: Final = "im.incident.ack"
    INCIDENT_MITIGATE: Final = "im.incident.mitigate"
    INCIDENT_RESOLVE: Final = "im.incident.resolve"
    INCIDENT_CLOSE: Final = "im.incident.close"
    INCIDENT_NOTE: Final = "im.incident.note"
    INCIDENT_STATE_CHANGE: Final = "im.incident.state_change"
    INCIDENT_ROLE_ASSIGN: Final = "im.incident.role_assign"
    ALERT_TRIGGER: Final = "im.alert.trigger"
    ALERT_ACK: Final = "im.alert.ack"
    ALERT_RESOLVE: Final = "im.alert.resolve"

    INCIDENT_PREFIX: Final = "im.incident."
    ALERT_PREFIX: Final = "im.alert."

    ALL: Final = (
        INCIDENT_DECLARE,
        INCIDENT_ACK,
        INCIDENT_MITIGATE,
        INCIDENT_RESOLVE,
        INCIDENT_CLOSE,
        INCIDENT_NOTE,
        INCIDENT_STATE_CHANGE,
        INCIDENT_ROLE_ASSIGN,
        ALERT_TRIGGER,
        ALERT_ACK,
        ALERT_RESOLVE,
    )


class Extension:
    """CloudEvents extension attributes. Names allow only ``[a-z0-9]``, hence no dots."""

    INCIDENT_ID: Final = "imincidentid"
    ACTOR: Final = "imactor"
    TAGS: Final = "imtags"
    CORRELATION_KEY: Final = "imcorrelationkey"
    DATA_CLASS: Final = "imdataclass"
    VISIBILITY: Final = "imvisibility"
    # The standard CloudEvents data-classification extension, read as a synonym of imdataclass.
    DATA_CLASSIFICATION: Final = "dataclassification"
    # Gateway-owned: stamped on accepted events, never accepted from producers.
    TENANT: Final = "imtenant"
    REDACTED: Final = "imredacted"
    # The incident's (or the alert's) state after the event: stamped on im.incident.* and
    # im.alert.* events at acceptance, so that filters and silences can route on it.
    SEVERITY: Final = "imseverity"
    STATUS: Final = "imstatus"
    SERVICE: Final = "imservice"

    ALL: Final = (INCIDENT_ID, ACTOR, TAGS, CORRELATION_KEY, DATA_CLASS, VISIBILITY)
    CONTEXT: Final = (SEVERITY, STATUS, SERVICE)
    GATEWAY_OWNED: Final = (TENANT, REDACTED, SEVERITY, STATUS, SERVICE)
