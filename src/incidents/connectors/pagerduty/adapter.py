"""PagerDuty Events API v2 (``POST /v2/enqueue``) -> ``im.alert.*`` CloudEvents.

``event_action`` trigger/acknowledge/resolve maps to ``im.alert.trigger/ack/resolve``;
``dedup_key`` is the correlation key (one is generated for a trigger without it);
``payload.severity`` critical/error/warning/info maps to SEV1..SEV4. The routing key is the
producer's token, so it is never stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from incidents.connectors.inbound_events import MAX_SUMMARY, make_event, parse_time, rfc3339
from incidents.model.alert import strings
from incidents.model.cloudevent import CloudEvent
from incidents.model.severity import Severity
from incidents.model.types import EventType

MAX_BYTES = 512 * 1024
SOURCE = "/v2/enqueue"
ACTIONS: Mapping[str, str] = {
    "trigger": EventType.ALERT_TRIGGER,
    "acknowledge": EventType.ALERT_ACK,
    "resolve": EventType.ALERT_RESOLVE,
}
SEVERITIES: Mapping[str, Severity] = {
    "critical": Severity.SEV1,
    "error": Severity.SEV2,
    "warning": Severity.SEV3,
    "info": Severity.SEV4,
}


def to_event(body: Mapping[str, Any]) -> tuple[CloudEvent, str]:
    """The event for one PagerDuty event object, and its dedup key."""
    action = str(body["event_action"])
    dedup_key = str(body.get("dedup_key") or uuid.uuid4().hex)
    original = {k: v for k, v in body.items() if k != "routing_key"}
    data: dict[str, Any] = {"original": original}
    for name in ("links", "images"):
        if body.get(name):
            data[name] = list(body[name])
    if body.get("client_url"):
        data["source_url"] = str(body["client_url"])
    time = None
    payload = body.get("payload")
    if action == "trigger" and isinstance(payload, Mapping):
        data["summary"] = str(payload["summary"])[:MAX_SUMMARY]
        data["severity"] = SEVERITIES[str(payload["severity"])].value
        data["labels"] = strings(
            {k: payload[k] for k in ("source", "component", "group", "class") if k in payload}
        )
        if "custom_details" in payload:
            data["details"] = payload["custom_details"]
        when = parse_time(payload.get("timestamp"))
        time = rfc3339(when) if when is not None else None
        if when is not None:
            data["starts_at"] = time
    event = make_event(
        {
            "id": str(uuid.uuid4()),
            "source": SOURCE,
            "type": ACTIONS[action],
            "subject": str(body["client"]) if body.get("client") else None,
            "time": time,
            "imcorrelationkey": dedup_key,
        },
        data,
    )
    return event, dedup_key
