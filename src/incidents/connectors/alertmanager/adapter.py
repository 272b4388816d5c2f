"""Prometheus Alertmanager webhook (payload version 4) -> ``im.alert.*`` CloudEvents.

Each alert of a notification becomes one event: ``im.alert.trigger`` while firing,
``im.alert.resolve`` once resolved, correlated by the alert's fingerprint. The event id is
derived from (fingerprint, status, startsAt[, endsAt]) so Alertmanager's retries and repeat
notifications of the same alert are stored once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incidents.connectors.inbound_events import (
    make_event,
    parse_time,
    rfc3339,
    source_of,
    stable_id,
    summary_of,
)
from incidents.model.alert import strings
from incidents.model.cloudevent import CloudEvent
from incidents.model.types import EventType
from incidents.policy.alert_rules import AlertRules

FALLBACK_SOURCE = "/ingest/alertmanager"


def group_context(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The notification without its alerts: what every event of it carries."""
    return {k: v for k, v in payload.items() if k != "alerts"}


def alert_event(
    alert: Mapping[str, Any],
    group: Mapping[str, Any],
    rules: AlertRules,
    fallback_source: str = FALLBACK_SOURCE,
) -> CloudEvent:
    labels = strings(alert.get("labels"))
    annotations = strings(alert.get("annotations"))
    fingerprint = str(alert["fingerprint"])
    firing = alert.get("status") == "firing"
    starts = parse_time(alert.get("startsAt"))
    ends = None if firing else parse_time(alert.get("endsAt"))
    when = starts if firing else (ends or starts)
    status = str(alert.get("status"))
    event_type = EventType.ALERT_TRIGGER if firing else EventType.ALERT_RESOLVE
    generator = str(alert.get("generatorURL") or "")
    data: dict[str, Any] = {
        "summary": summary_of(annotations, labels, f"alert {fingerprint}"),
        "severity": rules.severity_of(labels.get("severity")).value,
        "labels": labels,
        "annotations": annotations,
        "links": [{"href": generator, "text": "Source"}] if generator else [],
        "source_url": generator,
        "group_key": str(group.get("groupKey", "")),
        "truncated_alerts": int(group.get("truncatedAlerts") or 0),
        "details": {
            "receiver": group.get("receiver"),
            "group_labels": group.get("groupLabels") or {},
            "group_status": group.get("status"),
        },
        # A valid one-alert notification: nothing Alertmanager sent is lost.
        "original": {**group, "alerts": [dict(alert)]},
    }
    if starts is not None:
        data["starts_at"] = rfc3339(starts)
    if ends is not None:
        data["ends_at"] = rfc3339(ends)
    parts = [fingerprint, status, str(alert.get("startsAt", ""))]
    if not firing:
        parts.append(str(alert.get("endsAt", "")))
    return make_event(
        {
            "id": stable_id(*parts),
            "source": source_of(group.get("externalURL"), fallback_source),
            "type": event_type,
            "subject": labels.get("alertname"),
            "time": rfc3339(when) if when is not None else None,
            "imcorrelationkey": fingerprint,
        },
        data,
    )


def to_events(payload: Mapping[str, Any], rules: AlertRules) -> list[CloudEvent]:
    group = group_context(payload)
    return [alert_event(a, group, rules) for a in payload.get("alerts") or []]
