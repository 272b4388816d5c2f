"""The formats a subscription may name (its ``format``): the CloudEvents webhook, the default,
and each vendor's channel (``connectors/<vendor>/channel.py``); what each checks of a
subscription's settings, and which of its ``formatsettings`` are secrets.

The delivery engine offers one channel for each of these names (``delivery/channels``, which
adds the CloudEvents webhook's own channel to the vendors' listed here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from incidents.connectors.channel_base import Channel
from incidents.connectors.jira.channel import JiraChannel
from incidents.connectors.pagerduty.channel import PagerDutyChannel
from incidents.connectors.servicenow.channel import ServiceNowChannel
from incidents.connectors.slack.channel import SlackChannel
from incidents.connectors.teams.channel import TeamsChannel
from incidents.errors import FieldError, pointer

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

DEFAULT = "cloudevents"  # the CloudEvents webhook, the format of a subscription naming none
VENDOR_CHANNELS: tuple[type[Channel], ...] = (
    ServiceNowChannel,
    JiraChannel,
    PagerDutyChannel,
    SlackChannel,
    TeamsChannel,
)
VENDORS: Mapping[str, type[Channel]] = {c.name: c for c in VENDOR_CHANNELS}
NAMES: tuple[str, ...] = (DEFAULT, *VENDORS)
# Headers the CloudEvents webhook sets itself; a subscription may not replace them.
RESERVED_HEADERS = ("content-type", "content-length", "host", "user-agent", "transfer-encoding",
                    "connection", "traceparent", "tracestate")  # fmt: skip
RESERVED_PREFIXES = ("webhook-", "ce-")


def secret_pointers(name: str) -> tuple[str, ...]:
    """JSON pointers inside ``formatsettings`` of format ``name`` that hold secrets."""
    found = VENDORS.get(name)
    pointers: tuple[str, ...] = getattr(found, "SECRET_POINTERS", ())
    return pointers


def cloudevents_headers(spec: Spec) -> Sequence[FieldError]:
    """A subscription's own headers may not replace those the CloudEvents webhook sets."""
    return [
        FieldError(pointer("protocolsettings", "headers", name), f"{name!r} is set by the gateway")
        for name in spec.headers
        if name.lower() in RESERVED_HEADERS or name.lower().startswith(RESERVED_PREFIXES)
    ]


def validate(spec: Spec) -> Sequence[FieldError]:
    """The problems the channel of ``spec.format`` (one of ``NAMES``) finds with a
    subscription's settings."""
    if spec.format == DEFAULT:
        return cloudevents_headers(spec)
    return VENDORS[spec.format]().validate(spec)
