"""What the inbound side shares (the adapters, and two-way sync's rules): times, ids, events
and the check of an input schema."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jsonschema.protocols import Validator

from incidents.errors import UnprocessableEvent
from incidents.model.cloudevent import CloudEvent
from incidents.model.schemas import errors_of

MAX_SUMMARY = 1024
JSON = "application/json"


def parse_time(raw: object) -> datetime | None:
    """An RFC 3339 time (nanoseconds allowed) as UTC; None for Go's zero time or junk."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.year <= 1:  # 0001-01-01T00:00:00Z: Go's "not set"
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stable_id(*parts: str) -> str:
    """The same notification always gets the same CloudEvents id, so a tool's retries and
    repeats are stored once."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def source_of(url: object, fallback: str) -> str:
    if isinstance(url, str) and url and not any(c.isspace() for c in url):
        return url
    return fallback


def summary_of(annotations: Mapping[str, str], labels: Mapping[str, str], fallback: str) -> str:
    for text in (
        annotations.get("summary"),
        annotations.get("description"),
        annotations.get("message"),
        labels.get("alertname"),
    ):
        if text:
            return text[:MAX_SUMMARY]
    return fallback[:MAX_SUMMARY]


def make_event(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> CloudEvent:
    attrs = {"specversion": "1.0", "datacontenttype": JSON, **attributes}
    return CloudEvent({k: v for k, v in attrs.items() if v not in (None, "")}, dict(data))


def check_input(validator: Validator, payload: Any, what: str) -> None:
    problems = errors_of(validator, payload)
    if problems:
        raise UnprocessableEvent(
            f"the {what} payload fails its schema ({len(problems)} problem(s))", errors=problems
        )
