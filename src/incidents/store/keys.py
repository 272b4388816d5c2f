"""Every Redis key name the gateway uses, in one place."""

from __future__ import annotations

PREFIX = "incidents:"

SEQUENCE = PREFIX + "seq"
INCIDENT_COUNTER = PREFIX + "incident-counter"
OUTBOX = PREFIX + "outbox"
INCIDENT_INDEX = PREFIX + "incident-index"


EVENT_PREFIX = PREFIX + "event:"


def event(seq: int) -> str:
    return f"{EVENT_PREFIX}{seq}"


def dedup(source: str, event_id: str) -> str:
    # Length-prefixing the source keeps ("a:b", "c") and ("a", "b:c") apart.
    return f"{PREFIX}dedup:{len(source)}:{source}{event_id}"


def by_id(event_id: str) -> str:
    return f"{PREFIX}ids:{event_id}"


def timeline(incident_id: str) -> str:
    return f"{PREFIX}timeline:{incident_id}"


def incident(incident_id: str) -> str:
    return f"{PREFIX}incident:{incident_id}"
