"""Reading request bodies: a hard size limit enforced while the stream is read, and JSON
parsed with a bound on its nesting (orjson reads 1024 levels but writes only 255, so anything
deeper than the limit is refused here, before it can reach the store)."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from incidents.errors import InvalidHeader, PayloadTooLarge
from incidents.model.bounded_json import parse_json
from incidents.off_loop import off_loop
from incidents.settings import Settings

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


async def read_json(
    request: Request, settings: Settings, what: str = "the body", limit: int | None = None
) -> Any:
    """The body as JSON, within the size limit (``limit`` or the setting) and the nesting
    limit; a large body is parsed in a worker thread so other requests go on meanwhile."""
    body = await read_body(request, settings.max_body_bytes if limit is None else limit)
    return await off_loop(
        len(body) > LARGE_BODY, parse_json, body, what, max_depth=settings.max_json_depth
    )
