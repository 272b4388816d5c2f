"""Reading request bodies with a hard size limit, enforced while the stream is read."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from incidents.errors import InvalidHeader, MalformedJSON, PayloadTooLarge


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
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(
                f"the body exceeds {limit} bytes, the most this gateway accepts",
                extra={"limit": limit},
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, what: str = "the body") -> Any:
    if not body.strip():
        raise MalformedJSON(f"{what} is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"{what} is not valid JSON: {exc}") from None
