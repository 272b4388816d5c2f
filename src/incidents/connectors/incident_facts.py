"""What the paging and chat channels say about one delivery: the incident's title, severity,
status, service and commander, a line on what happened, and a link, read from the event (as
the owner may see it) and the incident view (as the owner may read it).

Everything here is user input: channels put it into JSON structurally and cut it to their
vendor's limits (``clip``); nothing here escapes for any markup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from incidents.connectors.channel_base import JSON_UTF8, Message, Request, post_json
from incidents.errors import FieldError, pointer
from incidents.model.severity import Severity
from incidents.model.types import EventType, Extension

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

ELLIPSIS = "…"
URL_TEMPLATE = "incident_url_template"  # formatsettings key: "https://console/incidents/{id}"
MAX_URL = 2048

# The status an incident has once each event is applied (``state_change`` says its own).
STATUS_AFTER = {
    EventType.INCIDENT_DECLARE: "open",
    EventType.INCIDENT_MITIGATE: "mitigated",
    EventType.INCIDENT_RESOLVE: "resolved",
    EventType.INCIDENT_CLOSE: "closed",
}
HEADLINES = {
    EventType.INCIDENT_DECLARE: "Declared",
    EventType.INCIDENT_ACK: "Acknowledged",
    EventType.INCIDENT_MITIGATE: "Mitigated",
    EventType.INCIDENT_RESOLVE: "Resolved",
    EventType.INCIDENT_CLOSE: "Closed",
    EventType.INCIDENT_NOTE: "Note",
    EventType.INCIDENT_STATE_CHANGE: "Changed",
    EventType.INCIDENT_ROLE_ASSIGN: "Role assigned",
    EventType.ALERT_TRIGGER: "Alert triggered",
    EventType.ALERT_ACK: "Alert acknowledged",
    EventType.ALERT_RESOLVE: "Alert resolved",
}
# The event's own words, by type: the first of these data fields that is a string.
_DETAIL_FIELDS = ("text", "summary", "note", "reason")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _text(found: object) -> str:
    return found.strip() if isinstance(found, str) else ""


@dataclass(frozen=True)
class Facts:
    incident: str  # the incident id; for an alert, its correlation key
    title: str
    severity: Severity | None
    status: str
    service: str
    commander: str
    headline: str  # what happened, in a few words ("Resolved", "Severity SEV1 -> SEV2")
    detail: str  # the event's own text (a note, a summary), maybe empty
    link: str | None  # the incident in the gateway's console, when a template is set
    is_alert: bool

    @property
    def label(self) -> str:
        """ "SEV1 Card payments failing" (the severity left out when unknown)."""
        return f"{self.severity} {self.title}" if self.severity else self.title


def first_severity(*candidates: object) -> Severity | None:
    """The first of ``candidates`` that reads as a severity (``SEV1``, ``sev-1``, ``P1``)."""
    for raw in candidates:
        try:
            return Severity.parse(raw)
        except ValueError:
            continue
    return None


def facts(message: Message) -> Facts:
    event, view = message.event, message.incident_view or {}
    data: Mapping[str, object] = event.data if isinstance(event.data, Mapping) else {}
    is_alert = event.type.startswith(EventType.ALERT_PREFIX)
    if is_alert:
        incident = _text(event.get(Extension.CORRELATION_KEY)) or message.incident or ""
    else:
        incident = message.incident or _text(event.get(Extension.INCIDENT_ID))
    title = _text(view.get("title")) or _text(data.get("title"))
    if is_alert:
        title = _text(data.get("summary")) or title
    status = _text(data.get("status")) if event.type == EventType.INCIDENT_STATE_CHANGE else ""
    status = status or STATUS_AFTER.get(event.type, "") or _text(view.get("status"))
    roles = view.get("roles")
    declared = data.get("roles")
    commander = _text(roles.get("commander")) if isinstance(roles, Mapping) else ""
    if not commander and isinstance(declared, Mapping):
        commander = _text(declared.get("commander"))
    if event.type == EventType.INCIDENT_ROLE_ASSIGN and data.get("role") == "commander":
        commander = _text(data.get("assignee")) or commander
    detail = next((_text(data.get(f)) for f in _DETAIL_FIELDS if _text(data.get(f))), "")
    return Facts(
        incident=incident,
        title=title or incident or event.type,
        severity=first_severity(data.get("severity"), view.get("severity")),
        status=status,
        service=_text(view.get("service")) or _text(data.get("service")),
        commander=commander,
        headline=_headline(event.type, data),
        detail=detail,
        link=incident_link(message.subscription.spec.formatsettings, incident),
        is_alert=is_alert,
    )


def _headline(event_type: str, data: Mapping[str, object]) -> str:
    if event_type == EventType.INCIDENT_STATE_CHANGE:
        changes = []
        if status := _text(data.get("status")):
            changes.append(f"status {status}")
        if severity := first_severity(data.get("severity")):
            changes.append(f"severity {severity}")
        return "Changed: " + ", ".join(changes) if changes else "Changed"
    if event_type == EventType.INCIDENT_ROLE_ASSIGN:
        role, who = _text(data.get("role")), _text(data.get("assignee"))
        return f"{role} assigned: {who}" if role and who else "Role assigned"
    return HEADLINES.get(event_type, event_type)


def incident_link(settings: Mapping[str, object], incident: str) -> str | None:
    """The incident's page from ``formatsettings.incident_url_template`` (``{id}`` replaced by
    the percent-encoded id); None without a template or an id."""
    template = settings.get(URL_TEMPLATE)
    if not isinstance(template, str) or not incident:
        return None
    return template.replace("{id}", quote(incident, safe=""))


def check_link_template(settings: Mapping[str, object]) -> Sequence[FieldError]:
    """A template, when given, is an absolute http(s) URL with one ``{id}`` in it."""
    if URL_TEMPLATE not in settings:
        return []
    template = settings[URL_TEMPLATE]
    where = pointer("formatsettings", URL_TEMPLATE)
    if not isinstance(template, str) or len(template) > MAX_URL:
        return [FieldError(where, f"{URL_TEMPLATE} must be a URL string (at most {MAX_URL})")]
    parts = urlsplit(template.replace("{id}", "x"))
    if parts.scheme not in ("http", "https") or not parts.netloc or "{id}" not in template:
        return [
            FieldError(
                where, f"{URL_TEMPLATE} must be an http(s) URL containing {{id}}, got {template!r}"
            )
        ]
    return []


def unknown_settings(settings: Mapping[str, object], known: Sequence[str]) -> list[FieldError]:
    return [
        FieldError(
            pointer("formatsettings", name), f"unknown setting {name!r} (known: {', '.join(known)})"
        )
        for name in settings
        if name not in known
    ]


CHAT_SETTINGS = (URL_TEMPLATE,)  # all a chat webhook (Slack, Teams) takes besides its URL


def chat_problems(spec: Spec) -> list[FieldError]:
    """A chat subscription's settings: only the incident link template, and a valid one."""
    settings = spec.formatsettings
    return [*unknown_settings(settings, CHAT_SETTINGS), *check_link_template(settings)]


def chat_post(message: Message, body_of: Callable[[Facts, str], Mapping[str, object]]) -> Request:
    """The POST of one chat message (``body_of``: the facts and event type to its JSON)."""
    document = body_of(facts(message), message.event.type)
    return post_json(message.subscription.spec.sink, document, content_type=JSON_UTF8)
