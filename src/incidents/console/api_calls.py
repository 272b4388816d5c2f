"""A console form does what the matching API call does, by calling that API endpoint in this
process as the signed-in principal: the same checks, policy, pipeline and answers, with
nothing about them written twice. A refusal comes back as the API's ``IncidentsError``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

Endpoint = Callable[[Request], Awaitable[Response]]


async def call(
    request: Request,
    endpoint: Endpoint,
    path_params: Mapping[str, str],
    body: object,
    content_type: str = "application/json",
) -> object:
    """``endpoint``'s JSON answer to ``body`` posted as the caller of ``request``."""
    raw = orjson.dumps(body)
    scope = dict(request.scope)
    scope["method"] = "POST"
    scope["path_params"] = dict(path_params)
    scope["query_string"] = b""
    scope["headers"] = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(raw)).encode()),
    ]
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    response = await endpoint(Request(scope, receive))
    return orjson.loads(response.body) if response.body else None
