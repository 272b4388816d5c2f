"""The CloudEvents webhook channel: each event POSTed to the sink in structured or binary
mode (CloudEvents HTTP binding), signed per Standard Webhooks, and the response classified
per the CloudEvents webhook spec (2xx delivered, 410 gone, 429/503 with Retry-After)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson

from incidents.connectors.channel_base import Message, Outcome, OutcomeKind, Request, Response
from incidents.connectors.channel_base import retry_after as parse_retry_after
from incidents.errors import FieldError
from incidents.model.cloudevent import AttributeValue, CloudEvent
from incidents.model.filters import canonical
from incidents.subscriptions import signing
from incidents.subscriptions.formats import DEFAULT, cloudevents_headers
from incidents.subscriptions.spec import DeliveryMode

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec

NAME = DEFAULT
STRUCTURED = "application/cloudevents+json; charset=utf-8"


def _header_value(value: AttributeValue) -> str:
    text = canonical(value)
    # The HTTP binding percent-encodes space, '"', '%' and everything outside printable ASCII.
    return quote(text, safe="!#$&'()*+,/:;<=>?@[\\]^_`{|}~-.")


def encode(event: CloudEvent, mode: DeliveryMode) -> tuple[bytes, dict[str, str]]:
    """The body and content headers of an event in ``structured`` or ``binary`` mode."""
    if mode == DeliveryMode.STRUCTURED:
        return orjson.dumps(event.to_dict()), {"content-type": STRUCTURED}
    headers = {}
    for name, value in event.attributes.items():
        if name != "datacontenttype":
            headers["ce-" + name] = _header_value(value)
    content_type = str(event.get("datacontenttype") or "application/json")
    headers["content-type"] = content_type
    if event.data_base64 is not None:
        body = base64.b64decode(event.data_base64)
    elif event.data is None:
        body = b""
    elif isinstance(event.data, str) and "json" not in content_type:
        body = event.data.encode()
    else:
        body = orjson.dumps(event.data)
    return body, headers


class CloudEventsChannel:
    name = NAME
    needs_incident = False  # the event is the whole message

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        """A subscription's own headers may not replace those this channel sets."""
        return cloudevents_headers(spec)

    def render(self, message: Message) -> Request:
        sub = message.subscription
        body, content_headers = encode(message.event, sub.spec.mode)
        headers = dict(sub.spec.headers)
        if sub.origin is not None:
            # every delivery carries the origin its handshake granted (webhook spec 4.1.2)
            headers["WebHook-Request-Origin"] = sub.origin
        headers.update(content_headers)
        secrets = sub.signing_secrets(message.now)
        headers.update(signing.headers(secrets, message.delivery_id, int(message.now), body))
        return Request("POST", sub.spec.sink, headers, body)

    def classify(self, message: Message, request: Request, response: Response) -> Outcome:
        status, latency = response.status, response.latency_ms
        text = response.body.decode("utf-8", "replace")
        if 200 <= status < 300:
            return Outcome(OutcomeKind.DELIVERED, status, latency, body=text)
        if status == 410:
            gone = "410 Gone: the sink asked to stop"
            return Outcome(OutcomeKind.GONE, status, latency, gone, text)
        wait = None
        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("retry-after"), message.now)
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        return Outcome(OutcomeKind.FAILED, status, latency, error, text, wait)
