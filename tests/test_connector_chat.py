"""The Slack and Teams channels: a Block Kit message and an Adaptive Card 1.5 per event, valid
by slack_sdk's block models and Microsoft's published card schema, user text escaped and cut
to the vendors' limits, responses classified, and each run by the real Dispatcher against a
server playing the vendor."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis
from slack_sdk.models.blocks import Block

from incidents.connectors.channel_base import Channel, Message, OutcomeKind, Response
from incidents.connectors.slack.channel import SlackChannel
from incidents.connectors.teams.channel import TeamsChannel
from incidents.model.cloudevent import CloudEvent
from incidents.settings import Settings
from incidents.subscriptions.spec import Spec
from incidents.subscriptions.subscription import new_subscription
from tests.connector_support import Vendor, adaptive_card_validator, drive, subscribe_format
from tests.connector_support import vendor as vendor_server
from tests.delivery_support import FakeClock, publish
from tests.support import event

T0 = 1_800_000_000.0
LINK = {"incident_url_template": "https://console.example/incidents/{id}"}
VIEW = {"id": "INC-7", "title": "Card payments failing", "severity": "SEV1", "status": "open",
        "service": "payments",
        "roles": {"commander": "alice", "comms": None, "scribe": None}}  # fmt: skip
CARD = adaptive_card_validator()
EVENTS = [
    ("im.incident.declare", {"title": "Card payments failing", "severity": "SEV1",
                             "service": "payments"}),
    ("im.incident.ack", {}),
    ("im.incident.mitigate", {"summary": "rolled back"}),
    ("im.incident.resolve", {"summary": "acquirer fixed"}),
    ("im.incident.close", {}),
    ("im.incident.note", {"text": "acquirer paged"}),
    ("im.incident.state_change", {"status": "open", "severity": "SEV2", "reason": "again"}),
    ("im.incident.role_assign", {"role": "commander", "assignee": "bob"}),
    ("im.alert.trigger", {"summary": "High error rate", "severity": "SEV3"}),
]  # fmt: skip


def message(
    type_: str,
    data: Any,
    view: Mapping[str, object] | None = VIEW,
    settings: Mapping[str, object] = LINK,
    format_: str = "slack",
) -> Message:
    spec = Spec(sink="https://hooks.example/T0/B0/X", format=format_, formatsettings=settings)
    sub = new_subscription(spec, "admin", datetime.fromtimestamp(T0, UTC))
    raw = {"specversion": "1.0", "id": "e-1", "source": "/mon", "type": type_, "data": data}
    raw["imcorrelationkey" if type_.startswith("im.alert.") else "imincidentid"] = "INC-7"
    return Message("msg_1", sub, CloudEvent.from_dict(raw), "INC-7", None, T0, view)


def slack_body(msg: Message) -> dict[str, Any]:
    """The rendered message, its blocks parsed and validated by slack_sdk."""
    request = SlackChannel().render(msg)
    body: dict[str, Any] = orjson.loads(request.body)
    assert set(body) == {"text", "blocks"}
    for raw in body["blocks"]:
        block = Block.parse(raw)
        assert block is not None
        block.validate_json()
        assert block.to_dict() == raw
    return body


def teams_card(msg: Message) -> dict[str, Any]:
    """The rendered card, validated against the Adaptive Card 1.5 schema."""
    request = TeamsChannel().render(msg)
    body = orjson.loads(request.body)
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    CARD.validate(card)
    assert card["version"] == "1.5"
    return card


@pytest.mark.parametrize(("type_", "data"), EVENTS)
def test_slack_renders_a_block_kit_message_for_each_event(type_: str, data: Any) -> None:
    """Each event is a header with severity and title, what happened, fields for status,
    service and commander, and a button to the incident; slack_sdk accepts every block."""
    body = slack_body(message(type_, data))
    header, what, fields, actions, context = body["blocks"]
    title = "High error rate" if type_.startswith("im.alert.") else "Card payments failing"
    assert header["text"]["text"].endswith(title) and header["text"]["text"].startswith("SEV")
    assert [f["text"].split("\n")[0] for f in fields["fields"]] == [
        "*Status*", "*Service*", "*Commander*"
    ]  # fmt: skip
    assert actions["elements"][0]["url"] == "https://console.example/incidents/INC-7"
    assert type_ in context["elements"][0]["text"] and body["text"]
    assert what["type"] == "section"


def test_slack_escapes_user_text_and_keeps_to_block_kit_limits() -> None:
    """&, < and > are escaped in mrkdwn (no <!channel>, no forged link); a long title is cut
    to the header's 150 characters; without a link template there is no button."""
    view = {**VIEW, "title": "T" * 400, "service": "<!channel> & <https://evil|x>"}
    msg = message("im.incident.note", {"text": "see <https://evil|here> & " + "n" * 5000},
                  view=view, settings={})  # fmt: skip
    body = slack_body(msg)
    header, what, fields, _ = body["blocks"]
    assert len(header["text"]["text"]) == 150
    service = fields["fields"][1]["text"]
    assert service == "*Service*\n&lt;!channel&gt; &amp; &lt;https://evil|x&gt;"
    assert "<" not in what["text"]["text"] and len(what["text"]["text"]) <= 3000
    assert "<" not in body["text"] and "actions" not in [b["type"] for b in body["blocks"]]


def test_slack_classifies_ok_rate_limits_and_a_dead_webhook() -> None:
    """200 ok is delivered; 429 waits its Retry-After; 400 invalid_payload fails; 404
    no_service and 410 channel_is_archived mean the webhook is gone."""
    channel, msg = SlackChannel(), message("im.incident.ack", {})
    request = channel.render(msg)

    def answer(status: int, body: bytes, **headers: str) -> Any:
        return channel.classify(msg, request, Response(status, headers, body, 2.0))

    assert answer(200, b"ok").kind == OutcomeKind.DELIVERED
    busy = answer(429, b"", **{"retry-after": "5"})
    assert (busy.kind, busy.retry_after) == (OutcomeKind.FAILED, 5.0)
    invalid = answer(400, b"invalid_payload")
    assert invalid.kind == OutcomeKind.FAILED and "invalid_payload" in invalid.error
    assert answer(404, b"no_service").kind == OutcomeKind.GONE
    assert answer(410, b"channel_is_archived").kind == OutcomeKind.GONE
    assert answer(404, b"something_else").kind == OutcomeKind.FAILED


@pytest.mark.parametrize(("type_", "data"), EVENTS)
def test_teams_renders_an_adaptive_card_for_each_event(type_: str, data: Any) -> None:
    """Each event is an Adaptive Card 1.5 message (heading, what happened, facts, an action
    opening the incident) that validates against Microsoft's published schema."""
    card = teams_card(message(type_, data, format_="teams"))
    heading, what, facts, _ = card["body"]
    assert heading["text"].startswith("SEV") and heading["style"] == "heading"
    assert [f["title"] for f in facts["facts"]] == ["Status", "Service", "Commander", "Incident"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open incident",
                                "url": "https://console.example/incidents/INC-7"}]  # fmt: skip
    assert what["text"]


def test_teams_cuts_long_text_and_leaves_out_the_link_without_a_template() -> None:
    """A huge note is cut, and no action is rendered without a link template."""
    msg = message("im.incident.note", {"text": "n" * 100_000}, settings={}, format_="teams")
    card = teams_card(msg)
    assert len(card["body"][1]["text"]) <= 4000 and "actions" not in card


def test_teams_classifies_accepted_throttled_and_deleted_workflows() -> None:
    """202 is delivered, 429 waits its Retry-After, 404 (the workflow is gone) disables, 400
    fails."""
    channel, msg = TeamsChannel(), message("im.incident.ack", {}, format_="teams")
    request = channel.render(msg)

    def answer(status: int, **headers: str) -> Any:
        return channel.classify(msg, request, Response(status, headers, b"", 2.0))

    assert answer(202).kind == OutcomeKind.DELIVERED
    assert answer(429, **{"retry-after": "9"}).retry_after == 9.0
    assert answer(404).kind == OutcomeKind.GONE
    assert answer(400).kind == OutcomeKind.FAILED


def test_chat_settings_are_checked_at_registration() -> None:
    """Unknown settings and a link template that is not an http(s) URL with {id} are named."""
    bad = Spec(sink="https://x.example", formatsettings={"incident_url_template": "ftp://x/{id}",
                                                         "colour": "red"})  # fmt: skip
    for channel in (SlackChannel(), TeamsChannel()):
        found = sorted(p.pointer for p in channel.validate(bad))
        assert found == ["/formatsettings/colour", "/formatsettings/incident_url_template"]
        assert channel.validate(Spec(sink="https://x.example", formatsettings=LINK)) == []


def _run_through_dispatcher(
    settings: Settings,
    client: httpx.Client,
    redis_client: redis.Redis,
    channel: Channel,
    accepted: tuple[int, dict[str, str], bytes],
) -> tuple[Vendor, str, str, FakeClock]:
    clock = FakeClock(T0)
    with vendor_server(accepted) as found:
        found.scripts["/hook"] = [(429, {"retry-after": "3"}, b"rate_limited")]
        subscribe_format(client, redis_client, found.url + "/hook", channel.name, LINK,
                         ["im.incident.*"])  # fmt: skip
        first = publish(client, event("im.incident.declare"))[0]["incident"]
        for type_ in ("im.incident.ack", "im.incident.note", "im.incident.resolve"):
            publish(client, event(type_, imincidentid=first))
        drive(settings, channel, clock, lambda: len(found.sent) == 5)
    return found, first, "", clock


def test_slack_through_the_dispatcher_in_order_after_a_429(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Run by the real Dispatcher against a server playing Slack: the 429's Retry-After is
    waited out, then the incident's messages arrive in order, each valid Block Kit."""
    slack, incident, _, clock = _run_through_dispatcher(
        settings, client, redis_client, SlackChannel(), (200, {}, b"ok")
    )
    for sent in slack.sent:
        for raw in sent.body["blocks"]:
            block = Block.parse(raw)
            assert block is not None
            block.validate_json()
    said = [s.body["blocks"][1]["text"]["text"] for s in slack.sent]
    assert said[0] == said[1] == "Declared"  # the throttled message, then its retry
    assert [s.split(":")[0] for s in said[2:]] == ["Acknowledged", "Note", "Resolved"]
    assert incident in slack.sent[0].body["blocks"][-1]["elements"][0]["text"]
    assert clock.now - T0 >= 3.0


def test_teams_through_the_dispatcher_in_order_after_a_429(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Run by the real Dispatcher against a server playing a Teams workflow (202 Accepted):
    the 429's Retry-After is waited out, then the cards arrive in order, each valid."""
    teams, _, _, clock = _run_through_dispatcher(
        settings, client, redis_client, TeamsChannel(), (202, {}, b"")
    )
    cards = [s.body["attachments"][0]["content"] for s in teams.sent]
    for card in cards:
        CARD.validate(card)
    said = [c["body"][1]["text"].split(":")[0] for c in cards]
    assert said == ["Declared", "Declared", "Acknowledged", "Note", "Resolved"]
    assert clock.now - T0 >= 3.0
