"""How the event store keeps an accepted event: its ingest time in whole microseconds, and
the compact JSON of each event in its bucket (``stored_tail``, read back by
``stored_event``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from incidents.model.cloudevent import CloudEvent, StoredEvent
from incidents.model.plan import Plan

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def microseconds(when: datetime) -> int:
    """A time as whole microseconds since the Unix epoch (a naive time is read as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MICROSECOND


def stored_tail(
    event: dict[str, Any], ingested: int, principal: str = "", meta: dict[str, Any] | None = None
) -> bytes:
    """An event as kept in its bucket, after '[<sequence>' (which the storing script
    prepends): ``[sequence, ingest time in microseconds since the epoch, principal, event]``,
    and the plan (``meta``) last when there is one (most events have none). The event's
    ``specversion`` is left out when it is its first attribute and ``"1.0"`` (every event the
    gateway accepts), and the names of the attributes in ``SHORT_NAMES`` are kept as their
    letter: ``stored_event`` puts both back, in place, so the event reads back, and is
    delivered, byte for byte the same."""
    items = list(event.items())
    if items and items[0] == _SPECVERSION:
        del items[0]
    if not _LONG_NAMES.keys().isdisjoint(event):
        raise ValueError("an attribute name is one upper-case letter: not a CloudEvents name")
    kept: list[Any] = [ingested, principal, {SHORT_NAMES.get(k, k): v for k, v in items}]
    if meta:
        kept.append(meta)
    return b"," + orjson.dumps(kept)[1:]


_SPECVERSION = ("specversion", "1.0")
# The names of the context attributes, the gateway's extensions and the data members, as a
# stored event keeps them: one upper-case letter, which no CloudEvents attribute name can be
# (they are lower-case letters and digits). Stored events depend on this table: a letter is
# never given another meaning.
SHORT_NAMES = {
    "id": "I",
    "source": "S",
    "type": "T",
    "time": "M",
    "subject": "U",
    "datacontenttype": "C",
    "dataschema": "D",
    "data": "A",
    "data_base64": "B",
    "imincidentid": "N",
    "imactor": "O",
    "imtags": "G",
    "imcorrelationkey": "K",
    "imdataclass": "L",
    "imvisibility": "V",
    "dataclassification": "F",
    "imtenant": "E",
    "imredacted": "R",
    "imseverity": "Y",
    "imstatus": "X",
    "imservice": "Z",
}
_LONG_NAMES = {short: name for name, short in SHORT_NAMES.items()}


def stored_event(raw: bytes | str) -> StoredEvent:
    """An event as kept in its bucket (for callers that read it along with other keys in
    one round trip)."""
    seq, ingested, principal, kept, *meta = orjson.loads(raw)
    event = {_LONG_NAMES.get(k, k): v for k, v in kept.items()}
    if _SPECVERSION[0] not in event:
        event = {_SPECVERSION[0]: _SPECVERSION[1], **event}
    return StoredEvent(
        event=CloudEvent.from_dict(event),
        sequence=int(seq),
        ingested_at=_EPOCH + int(ingested) * _MICROSECOND,
        principal=str(principal),
        plan=Plan.from_dict(meta[0] if meta else None),
    )
