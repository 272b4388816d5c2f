"""The PagerDuty channel (Events API v2): incidents and alerts become alerts in a PagerDuty
service, opened, acknowledged and resolved by ``dedup_key`` (the incident id; for an alert,
its correlation key), so retries and replays never open a second one.

PagerDuty has no place for a note, a mitigation or a role assignment: by default nothing is
sent for them (the attempt is ``skipped``). With ``formatsettings.change_events: true`` they go
to the same service as change events (``/v2/change/enqueue``): informational, they never page
anyone nor touch an alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from incidents.connectors.channel_base import (
    ChannelState,
    Message,
    Outcome,
    OutcomeKind,
    Request,
    Response,
    failed,
    post_json,
)
from incidents.connectors.incident_facts import (
    URL_TEMPLATE,
    Facts,
    check_link_template,
    clip,
    facts,
    unknown_settings,
)
from incidents.connectors.sync_settings import (
    INBOUND_SECRET,
    INBOUND_SECRET_POINTER,
    OWNS,
    validate_sync_settings,
)
from incidents.errors import FieldError, pointer
from incidents.model.severity import Severity
from incidents.model.types import EventType

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

NAME = "pagerduty"
ROUTING_KEY = "routing_key"
MAPPING = "mapping"
CHANGE_EVENTS = "change_events"
KNOWN_SETTINGS = (ROUTING_KEY, MAPPING, URL_TEMPLATE, CHANGE_EVENTS)
ENQUEUE_SUFFIX = "/enqueue"  # https://events.pagerduty.com/v2/enqueue
CHANGE_SUFFIX = "/change/enqueue"
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
MAX_SOURCE = 255
DEFAULT_RETRY_AFTER = 30.0  # PagerDuty's 429 may come without Retry-After

TRIGGER, ACKNOWLEDGE, RESOLVE, CHANGE = "trigger", "acknowledge", "resolve", "change"
SEVERITY: Mapping[str, str] = {
    "SEV1": "critical",
    "SEV2": "error",
    "SEV3": "warning",
    "SEV4": "info",
}
PD_SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS: Mapping[str, str] = {
    EventType.INCIDENT_DECLARE: TRIGGER,
    EventType.INCIDENT_ACK: ACKNOWLEDGE,
    EventType.INCIDENT_RESOLVE: RESOLVE,
    EventType.INCIDENT_CLOSE: RESOLVE,
    EventType.ALERT_TRIGGER: TRIGGER,
    EventType.ALERT_ACK: ACKNOWLEDGE,
    EventType.ALERT_RESOLVE: RESOLVE,
}
# A state change to these statuses; a severity change alone re-triggers with the new severity.
STATUS_ACTIONS: Mapping[str, str] = {"open": TRIGGER, "resolved": RESOLVE, "closed": RESOLVE}


def action_for(message: Message) -> str:
    """The Events v2 action an event maps to; CHANGE for those PagerDuty has no action for."""
    event = message.event
    if event.type != EventType.INCIDENT_STATE_CHANGE:
        return ACTIONS.get(event.type, CHANGE)
    data = event.data if isinstance(event.data, Mapping) else {}
    if (status := data.get("status")) in STATUS_ACTIONS:
        return STATUS_ACTIONS[str(status)]
    return TRIGGER if data.get("severity") is not None else CHANGE


def dedup_key(key: str) -> str:
    """The key as given when it fits PagerDuty's 255 characters; otherwise a stable cut with
    a digest of the whole, so two long keys never share an alert."""
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return key[: MAX_DEDUP_KEY - len(digest) - 1] + "#" + digest


def severity_table(settings: Mapping[str, object]) -> Mapping[str, str]:
    override = settings.get(MAPPING)
    found = override.get("severity") if isinstance(override, Mapping) else None
    return {**SEVERITY, **found} if isinstance(found, Mapping) else SEVERITY


class PagerDutyChannel:
    name = NAME
    needs_incident = True  # custom_details carry the incident as the owner may read it
    SECRET_POINTERS: tuple[str, ...] = ("/" + ROUTING_KEY, INBOUND_SECRET_POINTER)

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        settings = spec.formatsettings
        problems = unknown_settings(settings, (*KNOWN_SETTINGS, OWNS, INBOUND_SECRET))
        problems += validate_sync_settings(settings)
        key = settings.get(ROUTING_KEY)
        if not isinstance(key, str) or not key.strip() or len(key) > 255:
            problems.append(
                FieldError(pointer("formatsettings", ROUTING_KEY),
                           "routing_key (the Events API v2 integration key) is required")
            )  # fmt: skip
        if not spec.sink.rstrip("/").endswith(ENQUEUE_SUFFIX):
            problems.append(
                FieldError("/sink", "sink must be the Events API v2 URL, ending in /v2/enqueue")
            )
        if not isinstance(settings.get(CHANGE_EVENTS, False), bool):
            problems.append(
                FieldError(
                    pointer("formatsettings", CHANGE_EVENTS), "change_events is true or false"
                )
            )
        problems.extend(check_link_template(settings))
        problems.extend(_check_mapping(settings.get(MAPPING, {})))
        return problems

    def render(self, message: Message) -> Request | Outcome:
        settings = message.subscription.spec.formatsettings
        found, action = facts(message), action_for(message)
        if action == CHANGE and settings.get(CHANGE_EVENTS) is not True:
            return Outcome(
                OutcomeKind.SKIPPED,
                error=f"PagerDuty has no action for {message.event.type}; nothing sent",
            )
        if action == CHANGE:
            document = change_event(message, found, str(settings.get(ROUTING_KEY)))
            url = message.subscription.spec.sink.rstrip("/")[: -len(ENQUEUE_SUFFIX)]
            return post_json(url + CHANGE_SUFFIX, document, step=CHANGE)
        return post_json(
            message.subscription.spec.sink, alert_event(message, found, action), action
        )

    def classify(self, message: Message, request: Request, response: Response) -> Outcome:
        status, latency = response.status, response.latency_ms
        text = response.body.decode("utf-8", "replace")
        if 200 <= status < 300:
            state = None
            if request.step != CHANGE:
                sent = orjson.loads(request.body)
                data = {"action": sent["event_action"]}
                if "payload" in sent:
                    data["severity"] = sent["payload"]["severity"]
                state = ChannelState(sent["dedup_key"], data)
            return Outcome(OutcomeKind.DELIVERED, status, latency, body=text, state=state)
        error = f"HTTP {status}"
        if status == 400:
            error += " (PagerDuty refused the event)"
        elif 300 <= status < 400:
            error += " (redirects are not followed)"
        return failed(response, message.now, error, DEFAULT_RETRY_AFTER)


def alert_event(message: Message, found: Facts, action: str) -> dict[str, object]:
    """A trigger, acknowledge or resolve for the incident's (or the alert's) dedup_key."""
    settings = message.subscription.spec.formatsettings
    body: dict[str, object] = {
        "routing_key": str(settings.get(ROUTING_KEY)),
        "event_action": action,
        "dedup_key": dedup_key(found.incident or message.event.id),
    }
    if action != TRIGGER:
        return body
    severity = severity_table(settings)[found.severity or Severity.SEV3]
    payload: dict[str, object] = {
        "summary": clip(found.title, MAX_SUMMARY),
        "severity": severity,
        "source": clip(found.service or message.event.source, MAX_SOURCE),
        "custom_details": _details(message, found),
    }
    if isinstance(when := message.event.get("time"), str):
        payload["timestamp"] = when
    body.update(payload=payload, client="incidents")
    if found.link:
        body.update(client_url=found.link, links=[{"href": found.link, "text": found.incident}])
    return body


def change_event(message: Message, found: Facts, routing_key: str) -> dict[str, object]:
    """A change event (informational) for what PagerDuty has no alert action for."""
    said = f"{found.incident}: {found.headline}" + (f": {found.detail}" if found.detail else "")
    payload: dict[str, object] = {
        "summary": clip(said, MAX_SUMMARY),
        "source": clip(found.service or message.event.source, MAX_SOURCE),
        "custom_details": {"incident": found.incident, "type": message.event.type,
                           "data": message.event.data},
    }  # fmt: skip
    if isinstance(when := message.event.get("time"), str):
        payload["timestamp"] = when
    body: dict[str, object] = {"routing_key": routing_key, "payload": payload}
    if found.link:
        body["links"] = [{"href": found.link, "text": found.incident}]
    return body


def _details(message: Message, found: Facts) -> dict[str, object]:
    if found.is_alert or message.incident_view is None:
        # an alert, or an incident its owner may not read: the event as the owner may see it
        return {"type": message.event.type, "data": message.event.data}
    return dict(message.incident_view)


def _check_mapping(mapping: object) -> list[FieldError]:
    where = pointer("formatsettings", MAPPING)
    if not isinstance(mapping, Mapping):
        return [FieldError(where, "mapping must be an object")]
    problems = [
        FieldError(pointer("formatsettings", MAPPING, name), f"unknown mapping {name!r}")
        for name in mapping
        if name != "severity"
    ]
    table = mapping.get("severity", {})
    if not isinstance(table, Mapping):
        return [*problems, FieldError(where + "/severity", "mapping.severity must be an object")]
    for sev, value in table.items():
        if sev not in SEVERITY or value not in PD_SEVERITIES:
            problems.append(
                FieldError(pointer("formatsettings", MAPPING, "severity", sev),
                           f"maps SEV1..SEV4 to one of {', '.join(PD_SEVERITIES)}; "
                           f"got {sev!r}: {value!r}")
            )  # fmt: skip
    return problems
