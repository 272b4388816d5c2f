"""What the adapters share: times, ids, input schemas, and handing events to the pipeline."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from jsonschema.protocols import Validator

from incidents.auth import Principal
from incidents.errors import UnprocessableEvent
from incidents.ingest.pipeline import Ingestor
from incidents.model.cloudevent import CloudEvent
from incidents.model.schemas import errors_of
from incidents.services import Services

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


def adapter_schema(svc: Services, name: str) -> Validator:
    """The compiled input schema ``schemas/adapters/<name>.json`` (compiled once)."""
    return svc.adapter_schemas.get(name)


def check_input(validator: Validator, payload: Any, what: str) -> None:
    problems = errors_of(validator, payload)
    if problems:
        raise UnprocessableEvent(
            f"the {what} payload fails its schema ({len(problems)} problem(s))", errors=problems
        )


# What an adapter's answer says of each event's alert.
_ALERT_SHOWN = ("key", "outcome", "number", "status", "count", "reason")


async def submit(
    svc: Services, principal: Principal, events: Sequence[CloudEvent]
) -> list[dict[str, Any]]:
    """Check, admit, plan and store ``events`` as one batch; one result per event, saying
    what became of its alert (opened, deduplicated, ignored...)."""
    checked = await svc.get(Ingestor).check_off_loop([e.to_dict() for e in events], batch=True)
    accepted = await svc.get(Ingestor).accept(checked, principal)
    stored = {s.sequence: s for s in await svc.store.get_many([a.sequence for a in accepted])}
    results = []
    for item in accepted:
        result = item.to_dict()
        found = stored.get(item.sequence)
        planned = found.plan.alert if found is not None else None
        if planned is not None:
            shown = planned.to_dict()
            result["alert"] = {k: shown[k] for k in _ALERT_SHOWN if k in shown}
        results.append(result)
    return results
