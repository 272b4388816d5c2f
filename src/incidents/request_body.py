"""Reading request bodies: a hard size limit enforced while the stream is read, and JSON
parsed with a bound on its nesting (orjson reads 1024 levels but writes only 255, so anything
deeper than the limit is refused here, before it can reach the store)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from incidents.errors import InvalidHeader, JSONTooDeep, MalformedJSON, PayloadTooLarge
from incidents.off_loop import off_loop
from incidents.settings import Settings

DEFAULT_MAX_DEPTH = Settings.max_json_depth
# Parsing and walking a body this large takes long enough to hold up other requests.
LARGE_BODY = 64 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidHeader(f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise PayloadTooLarge(
                f"the body is {size} bytes; this gateway accepts at most {limit}",
                extra={"limit": limit},
            )
    chunks: list[bytes] = []
    received = 0
    if hasattr(request, "_body") or getattr(request, "_stream_consumed", True):
        async for chunk in request.stream():  # read before: Starlette answers, or refuses
            received += len(chunk)
            _within(received, limit)
            chunks.append(chunk)
        return b"".join(chunks)
    # Straight from ``receive``, as ``Request.stream`` reads it (marking the stream read),
    # without an async generator per request.
    request._stream_consumed = True
    while True:
        message = await request.receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                _within(received, limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _within(received: int, limit: int) -> None:
    if received > limit:
        raise PayloadTooLarge(
            f"the body exceeds {limit} bytes, the most this gateway accepts",
            extra={"limit": limit},
        )


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep (a bare
    object or array is one level). Walks level by level, so it needs no recursion."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            below.extend(c for c in children if type(c) in (dict, list))
        level = below
    return False


def parse_json(body: bytes, what: str = "the body", max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    if not body or body.isspace():
        raise MalformedJSON(f"{what} is empty; expected JSON")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit, far above ours
            raise _too_deep(what, max_depth) from None
        raise MalformedJSON(f"{what} is not valid JSON: {exc}") from None
    # Fewer brackets than the limit cannot nest deeper than it: most bodies stop here.
    if body.count(b"[") + body.count(b"{") > max_depth and too_deep(value, max_depth):
        raise _too_deep(what, max_depth)
    return value


def _too_deep(what: str, max_depth: int) -> JSONTooDeep:
    return JSONTooDeep(
        f"{what} nests objects and arrays more than {max_depth} levels deep, "
        "the most this gateway accepts",
        extra={"max_depth": max_depth},
    )


async def read_json(
    request: Request, settings: Settings, what: str = "the body", limit: int | None = None
) -> Any:
    """The body as JSON, within the size limit (``limit`` or the setting) and the nesting
    limit; a large body is parsed in a worker thread so other requests go on meanwhile."""
    body = await read_body(request, settings.max_body_bytes if limit is None else limit)
    return await off_loop(len(body) > LARGE_BODY, parse_json, body, what, settings.max_json_depth)
