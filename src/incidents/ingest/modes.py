"""The CloudEvents HTTP binding: structured, binary and batched mode, chosen by Content-Type
(never by the mere presence of ``ce-`` headers)."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from incidents.errors import (
    FieldError,
    InvalidHeader,
    MalformedJSON,
    TooManyEvents,
    UnsupportedMediaType,
)
from incidents.model.bounded_json import parse_json
from incidents.settings import Settings

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
Mode = Literal["structured", "binary", "batch"]


@dataclass(frozen=True)
class Parsed:
    mode: Mode
    events: list[Any]  # raw JSON-form events, checked by the envelope rules next


def media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(mt: str) -> bool:
    return mt in ("application/json", "text/json") or mt.endswith("+json")


# RFC 9110 5.6.4 (was RFC 7230 3.2.6): quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)


def _unquote(name: str, raw: bytes) -> bytes:
    """A value in double quotes, unquoted and unescaped (CloudEvents HTTP binding 3.1.3.2:
    done before percent-decoding, for senders of older versions of the binding)."""
    if not raw.startswith(b'"'):
        return raw
    quoted = _QUOTED.fullmatch(raw)
    if quoted is None:
        raise InvalidHeader(
            f"header {name!r} starts with a double quote but is not a quoted string",
            errors=[FieldError("/" + name.removeprefix("ce-"), "not a valid quoted string")],
        )
    return _QUOTED_PAIR.sub(rb"\1", quoted.group(1))


def _decode_header(name: str, raw: bytes) -> str:
    try:
        return unquote_to_bytes(_unquote(name, raw)).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidHeader(
            f"header {name!r} is not valid UTF-8 after percent-decoding",
            errors=[FieldError("/" + name.removeprefix("ce-"), "not valid UTF-8")],
        ) from None


def parse_binary(
    headers: Sequence[tuple[bytes, bytes]], body: bytes, max_depth: int = Settings.max_json_depth
) -> dict[str, Any]:
    event: dict[str, Any] = {}
    content_type: str | None = None
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name == "content-type":
            # Verbatim (binding 3.1.1): only ce- headers are percent-encoded; whatever is not a
            # media type is refused by the envelope rules for datacontenttype.
            content_type = raw_value.decode("latin-1")
        elif name.startswith("ce-"):
            attr = name[3:]
            if attr in ("data", "data_base64", "datacontenttype"):
                raise InvalidHeader(
                    f"header {name!r} is not allowed in binary mode: the body is the data and "
                    "Content-Type is its datacontenttype",
                    errors=[FieldError("/" + attr, "not allowed as a ce- header")],
                )
            if attr in event:
                raise InvalidHeader(f"header {name!r} appears more than once")
            event[attr] = _decode_header(name, raw_value)
    if content_type is not None:
        event["datacontenttype"] = content_type
    if body:
        mt = media_type(content_type) or "application/json"
        if is_json(mt):
            event["data"] = parse_json(body, "the body (the event's data)", max_depth=max_depth)
        elif mt.startswith("text/"):
            try:
                event["data"] = body.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedJSON(f"the body is {mt} but not valid UTF-8") from None
        else:
            event["data_base64"] = base64.b64encode(body).decode("ascii")
    return event


def parse_request(
    content_type: str | None,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    *,
    max_depth: int = Settings.max_json_depth,
    max_batch: int | None = None,
) -> Parsed:
    """The events a request carries, in JSON form; a batch longer than ``max_batch`` is
    refused before any event in it is looked at."""
    mt = media_type(content_type)
    if mt == STRUCTURED:
        return Parsed("structured", [parse_json(body, max_depth=max_depth)])
    if mt == BATCH:
        batch = parse_json(body, max_depth=max_depth)
        if not isinstance(batch, list):
            raise MalformedJSON(
                f"a {BATCH} body is a JSON array of events, not {type(batch).__name__}"
            )
        if max_batch is not None:
            check_count(len(batch), max_batch, "a batch")
        return Parsed("batch", batch)
    if mt.startswith("application/cloudevents"):
        raise UnsupportedMediaType(
            f"event format {mt!r} is not supported; use {STRUCTURED} or {BATCH}",
            extra={"supported": [STRUCTURED, BATCH, "binary mode (ce- headers)"]},
        )
    if not any(name.lower().startswith(b"ce-") for name, _ in headers):
        shown = repr(content_type) if content_type else "no Content-Type"
        raise UnsupportedMediaType(
            f"{shown} is not a CloudEvents mode: send {STRUCTURED}, {BATCH}, "
            "or binary mode with ce-specversion, ce-id, ce-source and ce-type headers",
            extra={"supported": [STRUCTURED, BATCH, "binary mode (ce- headers)"]},
        )
    return Parsed("binary", [parse_binary(headers, body, max_depth)])


def check_count(count: int, limit: int, what: str) -> None:
    """413 for a request that carries more events than ``limit`` (max_batch_events)."""
    if count > limit:
        raise TooManyEvents(
            f"{what} of {count} events is longer than {limit}, the most this gateway takes "
            "in one request; send it in parts",
            extra={"limit": limit, "events": count},
        )
