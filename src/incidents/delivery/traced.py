"""Routing and delivery in the event's trace. Routing: one span per event routed. One
delivery attempt: a span of its own (a client span, a child of the trace
context kept with the event, or of one derived from the event when it came with none), whose
trace context the attempt carries: in the ``traceparent``/``tracestate`` headers of every
request it makes (webhooks and connectors alike), and, for the ``cloudevents`` format, in
the delivered event's distributed-tracing attributes too (structured and binary mode).

The signature is made over the body as sent, trace attributes included, so it verifies; the
``webhook-id`` stays the delivery's id, so a subscriber's de-duplication is unchanged."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from incidents.connectors.channel_base import (
    Channel,
    Message,
    Outcome,
    OutcomeKind,
    Request,
    Response,
    Transport,
    exchange,
)
from incidents.delivery.channels.cloudevents import NAME as CLOUDEVENTS
from incidents.logs import log_ids
from incidents.model.cloudevent import StoredEvent
from incidents.model.origin import came_from
from incidents.model.types import Extension
from incidents.tracing.context import delivered, of_stored
from incidents.tracing.spans import MESSAGING_SYSTEM, Attributes, Spans

if TYPE_CHECKING:
    from incidents.subscriptions.subscription import Subscription

log = logging.getLogger("incidents.delivery")
_FAILED = (OutcomeKind.FAILED, OutcomeKind.REFUSED, OutcomeKind.GONE)


def with_headers(transport: Transport, extra: Mapping[str, str]) -> Transport:
    """``transport``, adding ``extra`` to the headers of every request."""

    async def send(request: Request) -> Response | Outcome:
        return await transport(replace(request, headers={**request.headers, **extra}))

    return send


def deliver_attributes(message: Message, attempt: int, incident: str) -> Attributes:
    """A delivery attempt's span attributes (semantic conventions for messaging, CloudEvents)."""
    sub, event = message.subscription, message.event
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "deliver",
        "messaging.destination.name": sub.id,
        "messaging.message.id": message.delivery_id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
        "incidents.subscription": sub.id,
        "incidents.format": sub.spec.format,
        "incidents.delivery": message.delivery_id,
        "incidents.attempt": attempt,
        "incidents.incident": incident,
        "server.address": urlsplit(sub.spec.sink).hostname or "",  # the host only: no secrets
    }


async def traced_exchange(
    spans: Spans,
    channel: Channel,
    message: Message,
    transport: Transport,
    mask: Callable[[str], str],
    attempt: int,
) -> Outcome:
    """``exchange`` (one attempt), in a span of the event's trace, carrying its context."""
    sub, event = message.subscription, message.event
    parent = of_stored(event)
    incident = str(event.get(Extension.INCIDENT_ID) or "")
    attributes = deliver_attributes(message, attempt, incident) if spans.enabled else None
    name = f"deliver {sub.spec.format}"
    with (
        spans.start(name, parent=parent, kind="client", attributes=attributes) as span,
        log_ids(
            event_id=event.id,
            incident=incident,
            subscription=sub.id,
            delivery=message.delivery_id,
            trace_id=parent.trace_id,
        ),
    ):
        trace = span.context or parent.child()
        if channel.name == CLOUDEVENTS:
            message = replace(message, event=delivered(event, trace))
        outcome = await exchange(channel, message, with_headers(transport, trace.headers()), mask)
        span.set("incidents.outcome", outcome.kind.value)
        if outcome.status is not None:
            span.set("http.response.status_code", outcome.status)
        if outcome.kind in _FAILED:
            error = mask(outcome.error or outcome.kind.value)
            span.fail(error)
            log.info("delivery attempt %d %s: %s", attempt, outcome.kind.value, error)
    return outcome


def route_span(spans: Spans, stored: StoredEvent, matched: list[Subscription], start: int) -> None:
    """The span of routing one event (its batch's time), in the event's trace: how many
    subscriptions it was queued for."""
    event = stored.event
    queued = sum(1 for sub in matched if not came_from(event, sub.id))
    attributes: Attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "route",
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
        "incidents.sequence": stored.sequence,
        "incidents.subscriptions.matched": queued,
    }
    with spans.start("route", parent=of_stored(event), attributes=attributes, start_ns=start):
        pass
