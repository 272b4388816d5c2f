"""The mark an event that came in through a connector subscription carries.

``imorigin`` (a CloudEvents extension attribute) holds the subscription id, and the event's
``source`` is ``/connectors/<subscription id>``. Fan-out never delivers such an event back to
that subscription (the system already shows the change), and delivers it to every other.
Both are checked, so a producer that merely copies the attribute cannot hide its event from a
subscription.
"""

from __future__ import annotations

from incidents.model.cloudevent import CloudEvent

ORIGIN = "imorigin"
SOURCE_PREFIX = "/connectors/"


def source_for(sub_id: str) -> str:
    return SOURCE_PREFIX + sub_id


def came_from(event: CloudEvent, sub_id: str) -> bool:
    """Whether ``event`` came in through subscription ``sub_id``'s inbound webhook."""
    return event.get(ORIGIN) == sub_id and event.source == source_for(sub_id)
