"""Delivery channels: how deliveries reach each kind of target (``Channel``, the seam in
``connectors/channel_base.py``): the CloudEvents webhook (``cloudevents``, here) and the
vendors' channels (``connectors/<vendor>/channel.py``).

The registry: one channel for each format a subscription may name (``subscriptions/formats``).
Channels are offered to workers wrapped in ``Unsealing``, which opens the stored (sealed)
secrets just before the channel reads them: those in its settings (``SECRET_POINTERS``) and
the signing secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from incidents.connectors.channel_base import Channel, Message, Outcome, Request, Response
from incidents.delivery.channels.cloudevents import CloudEventsChannel
from incidents.errors import FieldError
from incidents.store.secret_box import SecretBox, secret_box
from incidents.subscriptions import signing_secrets
from incidents.subscriptions.formats import VENDOR_CHANNELS, secret_pointers
from incidents.subscriptions.secret_fields import opened, value_at

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec
    from incidents.subscriptions.subscription import Subscription

CHANNELS: tuple[type[Channel], ...] = (CloudEventsChannel, *VENDOR_CHANNELS)


class Unsealing:
    """A channel whose messages carry their subscription's secrets opened (the workers' key)."""

    def __init__(self, channel: Channel, pointers: Sequence[str], box: SecretBox | None) -> None:
        self.channel = channel
        self.name = channel.name
        self.needs_incident = channel.needs_incident
        self.pointers = tuple(pointers)
        self.box = box
        # The last subscription opened per id: lanes deliver many events to one subscription.
        self._opened: dict[str, tuple[Subscription, Subscription]] = {}

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        return self.channel.validate(spec)

    def _open(self, message: Message) -> Message:
        sub = message.subscription
        held = self._opened.get(sub.id)
        if held is None or held[0] is not sub:
            settings = opened(sub.spec.formatsettings, self.pointers, sub.id, self.box)
            signing = signing_secrets.opened(sub.secrets, sub.id, self.box)
            usable = sub
            if settings is not sub.spec.formatsettings or signing != sub.secrets:
                spec = replace(sub.spec, formatsettings=settings)
                usable = replace(sub, spec=spec, secrets=signing)
            held = (sub, usable)
            if len(self._opened) > 4096:
                self._opened.clear()
            self._opened[sub.id] = held
        return replace(message, subscription=held[1])

    def mask(self, message: Message) -> Callable[[str], str]:
        """Hides the subscription's opened secrets (where a request carries one in its URL or
        body, as PagerDuty's routing key) from what the attempt log keeps."""
        opened_settings = self._open(message).subscription.spec.formatsettings
        hidden = [
            found
            for at in self.pointers
            if isinstance(found := value_at(opened_settings, at), str) and len(found) >= 4
        ]

        def masked(text: str) -> str:
            for secret in hidden:
                text = text.replace(secret, "***")
            return text

        return masked

    def render(self, message: Message) -> Request | Outcome:
        return self.channel.render(self._open(message))

    def classify(self, message: Message, request: Request, response: Response) -> Outcome | Request:
        return self.channel.classify(self._open(message), request, response)


def default_channels(secret_key: str | None = None) -> Mapping[str, Channel]:
    """The channels a worker offers, by name (``Subscription.channel``); ``secret_key``
    (``Settings.secret_key``) opens the secrets stored with subscriptions."""
    box = secret_box(secret_key)
    return {kind.name: Unsealing(kind(), secret_pointers(kind.name), box) for kind in CHANNELS}


def mask_for(channel: Channel, message: Message) -> Callable[[str], str]:
    """What hides ``message``'s subscription secrets in the attempt log (none to hide for a
    channel without secrets)."""
    if isinstance(channel, Unsealing):
        return channel.mask(message)
    return _as_is


def _as_is(text: str) -> str:
    return text
