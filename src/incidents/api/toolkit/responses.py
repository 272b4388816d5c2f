"""Small HTTP helpers shared by the route modules: JSON and problem responses, and the query
parameters several endpoints take (integers, and a page: ``limit``, ``cursor``, ``offset``)
and the answer a listing gives for one page."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from incidents.errors import FieldError, InvalidRequest
from incidents.store.index_pages import Page, PageRequest

T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"
# On an answer that shows a secret once (a signing secret, a token): no cache keeps a copy.
SHOWS_A_SECRET = {"Cache-Control": "no-store"}
MAX_LIMIT = 1000


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def json_response(
    content: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(content, status_code=status, headers=dict(headers or {}))


def problem_response(
    body: Mapping[str, object], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(dict(body)),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    """A whole-number query parameter from 0 (to ``maximum``); anything else is a 400."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0 or (maximum is not None and value > maximum):
        bound = f"0 to {maximum}" if maximum is not None else "0 or more"
        raise InvalidRequest(
            f"query parameter {name}={raw!r} must be an integer from {bound}",
            errors=[FieldError(f"/query/{name}", f"{raw!r} is not an integer from {bound}")],
        )
    return value


def parsed_param(request: Request, name: str, parse: Callable[[str], T]) -> T | None:
    """A query parameter read with ``parse``, None when absent; the ValueError ``parse`` raises
    for a bad value is a 400 naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc), errors=[FieldError(f"/query/{name}", str(exc))]) from None


def page_params(request: Request, default_limit: int = 100) -> PageRequest:
    """``limit``, ``cursor`` (a ``next_cursor`` from the previous page) and ``offset`` (kept
    for clients written before cursors); a cursor that is not one is a 400."""
    return PageRequest.after(
        int_param(request, "limit", default_limit, MAX_LIMIT),
        request.query_params.get("cursor") or None,
        int_param(request, "offset", 0),
    )


def page_response(name: str, page: Page[Any]) -> Response:
    """One page of a listing: ``{name: [...], "count": n, "next_cursor": ...}``."""
    return json_response(
        {name: page.items, "count": len(page.items), "next_cursor": page.next_cursor}
    )
