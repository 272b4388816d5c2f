"""Delivery channels: how deliveries reach each kind of target (``base.Channel``)."""

from __future__ import annotations

from collections.abc import Mapping

from incidents.delivery.channels.base import Channel
from incidents.delivery.channels.cloudevents import CloudEventsChannel


def default_channels() -> Mapping[str, Channel]:
    """The channels a worker offers, by name (``Subscription.channel``)."""
    channel = CloudEventsChannel()
    return {channel.name: channel}
