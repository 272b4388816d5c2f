"""The one format of the archive, of exports and of imports: CloudEvents JSON Lines.

Each line is one event in the CloudEvents JSON event format (structured: attributes, then
``data`` or ``data_base64``). What the gateway knows about an accepted event beyond the event
itself travels in extension attributes the gateway owns (lowercase ``a-z0-9`` names):

- ``imsequence``: its gateway sequence (an integer);
- ``imingestedat``: when the gateway accepted it (RFC 3339);
- ``imprincipal``: the id of the principal that sent it;
- ``implan``: what planning decided (alert outcome, whether it was fanned out), as JSON.

State the gateway derived from events travels as events of its own, with ``source``
``/incidents`` and these types, each with the stored document as ``data``:

- ``im.gateway.incident``: an incident document (``data.incident``), its version
  (``imversion``) and its records in other systems (``data.refs``);
- ``im.gateway.alert``: an alert document (``data.alert``) and its version;
- ``im.gateway.delivery``: a delivery record (``data.delivery``), in files of their own;
- ``im.gateway.attempt``: one entry of a subscription's attempt log (``data.attempt``).

A reader takes any of these lines, in any order, and skips none silently: a line that is
not one of them is an error that names the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.model.plan import Plan

GATEWAY_SOURCE = "/incidents"
INCIDENT_TYPE = "im.gateway.incident"
ALERT_TYPE = "im.gateway.alert"
DELIVERY_TYPE = "im.gateway.delivery"
ATTEMPT_TYPE = "im.gateway.attempt"
SNAPSHOT_TYPES = frozenset({INCIDENT_TYPE, ALERT_TYPE, DELIVERY_TYPE, ATTEMPT_TYPE})

SEQUENCE = "imsequence"
INGESTED_AT = "imingestedat"
PRINCIPAL = "imprincipal"
PLAN = "implan"
VERSION = "imversion"
_OWNED = (SEQUENCE, INGESTED_AT, PRINCIPAL, PLAN)
_NAME = re.compile(r"[a-z0-9]+")  # a CloudEvents attribute name
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # what no CloudEvents string holds


class RecordError(ValueError):
    """A line that is not a record of this format; the message says why."""


def event_record(stored: StoredEvent) -> dict[str, Any]:
    """An accepted event as a line: the event with the gateway's extension attributes."""
    out = stored.event.to_dict()
    out[SEQUENCE] = stored.sequence
    out[INGESTED_AT] = stored.ingested_at.isoformat()
    if stored.principal:
        out[PRINCIPAL] = stored.principal
    plan = stored.plan.to_dict()
    if plan:
        out[PLAN] = orjson.dumps(plan).decode()
    return out


def stored_of(record: Mapping[str, Any]) -> StoredEvent:
    """The accepted event a line of ``event_record`` describes."""
    try:
        sequence = int(record[SEQUENCE])
        ingested = datetime.fromisoformat(str(record[INGESTED_AT]))
        plan = orjson.loads(record[PLAN]) if PLAN in record else None
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise RecordError(
            f"event {record.get('id')!r} lacks valid gateway attributes: {exc}"
        ) from None
    if ingested.tzinfo is None:
        ingested = ingested.replace(tzinfo=UTC)
    event = {k: v for k, v in record.items() if k not in _OWNED}
    for attribute in ("id", "source"):
        if _CONTROL.search(str(event.get(attribute, ""))):
            raise RecordError(
                f"event {record.get('id')!r}: its {attribute} holds a control character"
            )
    named = [k for k in event if k not in ("data", "data_base64") and not _NAME.fullmatch(k)]
    if named:
        raise RecordError(
            f"event {record.get('id')!r} has an attribute name that is not lower-case letters"
            f" and digits: {named[0]!r}"
        )
    return StoredEvent(
        event=CloudEvent.from_dict(event),
        sequence=sequence,
        ingested_at=ingested,
        principal=str(record.get(PRINCIPAL, "")),
        plan=Plan.from_dict(plan),
    )


def snapshot(
    kind: str, record_id: str, at: datetime, data: Mapping[str, Any], version: int = 0
) -> dict[str, Any]:
    """A line of one of the gateway's own types (``im.gateway.*``)."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": record_id,
        "source": GATEWAY_SOURCE,
        "type": kind,
        "time": at.astimezone(UTC).isoformat(),
        "datacontenttype": "application/json",
    }
    if version:
        out[VERSION] = version
    out["data"] = dict(data)
    return out


@dataclass(frozen=True)
class Line:
    """One line read back: an accepted event, or a snapshot of one of the gateway's types."""

    number: int  # counted from 1 in its file
    stored: StoredEvent | None = None
    kind: str = ""  # the snapshot's type
    data: Mapping[str, Any] | None = None
    version: int = 0


def parse_line(raw: bytes, number: int) -> Line:
    """A line of a file in this format; RecordError names what is wrong with it."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"line {number} is not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("specversion") != "1.0":
        raise RecordError(f"line {number} is not a CloudEvents 1.0 event in JSON format")
    kind = record.get("type")
    if record.get("source") == GATEWAY_SOURCE and kind in SNAPSHOT_TYPES:
        data = record.get("data")
        if not isinstance(data, dict):
            raise RecordError(f"line {number}: a {kind} record has no data object")
        return Line(number, kind=str(kind), data=data, version=int(record.get(VERSION) or 0))
    try:
        return Line(number, stored=stored_of(record))
    except RecordError as exc:
        raise RecordError(f"line {number}: {exc}") from None


def encode(record: Mapping[str, Any]) -> bytes:
    """A record as one line of the file (with its newline)."""
    return orjson.dumps(record) + b"\n"
