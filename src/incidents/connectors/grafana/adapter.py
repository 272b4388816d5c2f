"""Grafana Alerting webhook (version 1) -> ``im.alert.*`` CloudEvents, plus the optional
``X-Grafana-Alerting-Signature`` check (hex HMAC-SHA256 of the body, or of
``<timestamp>:<body>`` when a timestamp header is configured)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from incidents.connectors.alertmanager.adapter import alert_event, group_context
from incidents.errors import Unauthorized
from incidents.model.cloudevent import CloudEvent
from incidents.policy.alert_rules import AlertRules, GrafanaSigning

FALLBACK_SOURCE = "/ingest/grafana"


def verify_signature(
    signing: GrafanaSigning, headers: Mapping[str, str], body: bytes, now: datetime
) -> None:
    """Raise Unauthorized unless the request carries Grafana's signature for ``body``."""
    given = headers.get(signing.header.lower(), "").strip()
    if not given:
        raise Unauthorized(f"this producer's Grafana requests must be signed ({signing.header})")
    signed = body
    if signing.timestamp_header:
        stamp = headers.get(signing.timestamp_header.lower(), "").strip()
        try:
            age = abs(now.timestamp() - float(stamp))
        except ValueError:
            raise Unauthorized(f"{signing.timestamp_header} is missing or not a number") from None
        if age > signing.max_age:
            raise Unauthorized(f"{signing.timestamp_header} is {age:.0f} s away from now")
        signed = stamp.encode() + b":" + body
    expected = hmac.new(signing.secret.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Unauthorized(f"{signing.header} does not match the body")


def to_events(payload: Mapping[str, Any], rules: AlertRules) -> list[CloudEvent]:
    group = group_context(payload)
    events = []
    for alert in payload.get("alerts") or []:
        event = alert_event(alert, group, rules, FALLBACK_SOURCE)
        data = dict(event.data)
        links = list(data["links"])
        for field, text in (
            ("silenceURL", "Silence"),
            ("dashboardURL", "Dashboard"),
            ("panelURL", "Panel"),
        ):
            if alert.get(field):
                links.append({"href": alert[field], "text": text})
        data["links"] = links
        if alert.get("imageURL"):
            data["images"] = [{"src": alert["imageURL"], "alt": "panel screenshot"}]
        data["values"] = alert.get("values")
        data["details"] = {**data["details"], "state": payload.get("state")}
        if alert.get("valueString"):
            data["details"]["value_string"] = alert["valueString"]
        events.append(event.with_data(data))
    return events
