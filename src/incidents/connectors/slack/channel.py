"""The Slack channel: one incoming-webhook message per event, in Block Kit: a header with the
severity and title, what happened, fields for status, service and commander, and a button to
the incident when ``formatsettings.incident_url_template`` is set.

Event text is user input: it goes into JSON structurally, cut to Block Kit's limits, and
``&``, ``<`` and ``>`` are escaped in mrkdwn so no one can mention ``<!channel>`` or forge a
link through an incident title.
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
    ELLIPSIS,
    Facts,
    chat_post,
    chat_problems,
    clip,
)
from incidents.errors import FieldError

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

NAME = "slack"
MAX_HEADER = 150  # plain_text in a header block
MAX_SECTION = 3000  # a section's text
MAX_FIELD = 2000  # each section field
MAX_CONTEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_TEXT = 3000  # the notification text (Slack cuts at 40,000; nobody reads that far)
# Slack's answers that mean this webhook will never work again (its documented errors).
GONE_ERRORS = {
    404: ("no_service", "no_team", "channel_not_found"),
    403: ("team_disabled", "invalid_token"),
}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str, limit: int) -> str:
    """``text`` as Slack mrkdwn shows it literally (``&``, ``<``, ``>`` escaped), cut to at most
    ``limit`` characters as escaped, never inside an escape."""
    pieces = [_ESCAPES.get(char, char) for char in text]
    if sum(len(p) for p in pieces) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - 1:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + ELLIPSIS


def _plain(text: str, limit: int) -> dict[str, object]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": False}


def _mrkdwn(text: str) -> dict[str, object]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def message_body(found: Facts, event_type: str) -> dict[str, object]:
    """``{"text", "blocks"}`` for one event."""
    what = found.headline + (f": {found.detail}" if found.detail else "")
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": _plain(found.label, MAX_HEADER)},
        {"type": "section", "text": _mrkdwn(escape(what, MAX_SECTION))},
    ]
    fields = [
        _mrkdwn(f"*{name}*\n" + escape(value or "-", MAX_FIELD - len(name) - 3))
        for name, value in (
            ("Status", found.status),
            ("Service", found.service),
            ("Commander", found.commander),
        )
    ]
    blocks.append({"type": "section", "fields": fields})
    if found.link and len(found.link) <= MAX_URL:
        button = {"type": "button", "text": _plain("Open incident", MAX_BUTTON_TEXT),
                  "url": found.link}  # fmt: skip
        blocks.append({"type": "actions", "elements": [button]})
    context = escape(f"{found.incident} · {event_type}", MAX_CONTEXT)
    blocks.append({"type": "context", "elements": [_mrkdwn(context)]})
    text = escape(f"{found.label}: {what}", MAX_TEXT)
    return {"text": text, "blocks": blocks}


class SlackChannel:
    name = NAME
    needs_incident = True  # status, service and commander come from the incident
    SECRET_POINTERS: tuple[str, ...] = ()  # the webhook URL (the sink) is the only secret

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        return chat_problems(spec)

    def render(self, message: Message) -> Request:
        return chat_post(message, message_body)

    def classify(self, message: Message, request: Request, response: Response) -> Outcome:
        status, latency = response.status, response.latency_ms
        text = response.body.decode("utf-8", "replace")
        said = text.strip()
        if 200 <= status < 300:
            return Outcome(OutcomeKind.DELIVERED, status, latency, body=text)
        if status == 410 or said in GONE_ERRORS.get(status, ()):
            gone = f"HTTP {status} {said or 'Gone'}: Slack says this webhook no longer works"
            return Outcome(OutcomeKind.GONE, status, latency, gone, text)
        return failed(
            response, message.now, f"HTTP {status}" + (f" {clip(said, 100)}" if said else "")
        )
