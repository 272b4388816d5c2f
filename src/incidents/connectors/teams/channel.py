"""The Microsoft Teams channel: one message per event to a Teams workflow webhook, carrying
an Adaptive Card 1.5 (a heading with the severity and title, what happened, a fact set with
status, service and commander, and an action opening the incident when
``formatsettings.incident_url_template`` is set). Workflows answer 202 Accepted.

Event text is user input: it goes into the card structurally and cut to size; a card's
TextBlock takes a small Markdown subset and no HTML, so nothing in it can run or post.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from incidents.connectors.channel_base import (
    Message,
    Outcome,
    OutcomeKind,
    Request,
    Response,
    failed,
)
from incidents.connectors.incident_facts import (
    Facts,
    chat_post,
    chat_problems,
    clip,
)
from incidents.errors import FieldError

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

NAME = "teams"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
# Teams refuses messages over about 28 KB: these keep a card well inside that.
MAX_TITLE = 300
MAX_TEXT = 4000
MAX_FACT = 300
MAX_URL = 2048
SEVERITY_COLOR = {"SEV1": "Attention", "SEV2": "Attention", "SEV3": "Warning", "SEV4": "Default"}


def card(found: Facts, event_type: str) -> dict[str, object]:
    """The Adaptive Card for one event."""
    what = found.headline + (f": {found.detail}" if found.detail else "")
    color = SEVERITY_COLOR.get(str(found.severity), "Default")
    facts_shown = [
        {"title": name, "value": clip(value or "-", MAX_FACT)}
        for name, value in (
            ("Status", found.status),
            ("Service", found.service),
            ("Commander", found.commander),
            ("Incident", found.incident),
        )
    ]
    body: list[dict[str, object]] = [
        {"type": "TextBlock", "text": clip(found.label, MAX_TITLE), "style": "heading",
         "size": "Large", "weight": "Bolder", "color": color, "wrap": True},
        {"type": "TextBlock", "text": clip(what, MAX_TEXT), "wrap": True},
        {"type": "FactSet", "facts": facts_shown},
        {"type": "TextBlock", "text": event_type, "isSubtle": True, "size": "Small",
         "wrap": True},
    ]  # fmt: skip
    content: dict[str, object] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
    }
    if found.link and len(found.link) <= MAX_URL:
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open incident",
                               "url": found.link}]  # fmt: skip
    return content


def message_body(found: Facts, event_type: str) -> dict[str, object]:
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "content": card(found, event_type)}],
    }


class TeamsChannel:
    name = NAME
    needs_incident = True  # status, service and commander come from the incident
    SECRET_POINTERS: tuple[str, ...] = ()  # the workflow URL (the sink) carries its own key

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        return chat_problems(spec)

    def render(self, message: Message) -> Request:
        return chat_post(message, message_body)

    def classify(self, message: Message, request: Request, response: Response) -> Outcome:
        status, latency = response.status, response.latency_ms
        text = response.body.decode("utf-8", "replace")
        if 200 <= status < 300:
            return Outcome(OutcomeKind.DELIVERED, status, latency, body=text)
        if status in (404, 410):
            gone = f"HTTP {status}: the workflow no longer exists"
            return Outcome(OutcomeKind.GONE, status, latency, gone, text)
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        return failed(response, message.now, error)
