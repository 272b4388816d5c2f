"""Span attributes the semantic conventions name, for the spans of acceptance."""

from __future__ import annotations

from collections.abc import Sequence

from incidents.model.cloudevent import CloudEvent
from incidents.tracing.spans import MESSAGING_SYSTEM, Attributes


def accept_attributes(events: Sequence[CloudEvent]) -> Attributes:
    """The acceptance span's attributes (semantic conventions for messaging, CloudEvents)."""
    found: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "receive",
        "messaging.operation.name": "accept",
        "messaging.batch.message_count": len(events),
    }
    if len(events) == 1:
        found["cloudevents.event_id"] = events[0].id
        found["cloudevents.event_type"] = events[0].type
        found["cloudevents.event_source"] = events[0].source
        found["messaging.message.id"] = events[0].id
    return found
