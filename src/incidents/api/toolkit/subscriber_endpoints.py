"""What the subscribers' endpoints (subscriptions, delivery logs, silences) and the console
pages that act for them share: the app's clock, the JSON body, the caller, the ``limit``
parameter, and the shape of their OpenAPI operations."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from starlette.requests import Request

from incidents.api.toolkit.app_services import Services, services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import (
    BEARER,
    JSONObject,
    errors,
    json_body,
    query_param,
)
from incidents.api.toolkit.request_body import read_body
from incidents.errors import InvalidRequest
from incidents.model.bounded_json import parse_json
from incidents.model.principal import SUBSCRIBER, Principal

_LIMIT = re.compile(r"[0-9]{1,7}")
ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
OBJ: JSONObject = {"type": "object"}
LIMIT = [query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})]


def now(svc: Services) -> datetime:
    """The app's clock (``create_app(clock=...)``), which also stamps accepted events."""
    return svc.clock()


async def json_request(request: Request) -> object:
    """The body as JSON within the size and nesting limits; an empty body is ``{}``."""
    settings = services(request).settings
    body = await read_body(request, settings.max_body_bytes)
    if not body.strip():
        return {}
    return parse_json(body, max_depth=settings.max_json_depth)


def subscriber(request: Request) -> tuple[Services, Principal]:
    """The services and the caller, who must hold the subscriber role (admins do)."""
    principal = caller(request)
    principal.require(SUBSCRIBER)
    return services(request), principal


def limit(request: Request, default: int = 100, most: int = 1000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"limit={raw!r} must be a whole number from 1 to {most}")
    return int(raw)


def operation(
    summary: str,
    ok: str,
    ok_text: str,
    *codes: int,
    schema: Mapping[str, object] = OBJ,
    **more: object,
) -> JSONObject:
    """An authenticated operation answering ``ok`` with ``schema``, or one of ``codes``."""
    return {
        "summary": summary,
        "security": BEARER,
        "responses": {ok: json_body(schema, ok_text), **errors(*codes)},
        **more,
    }


def request_body(schema: Mapping[str, object], required: bool = True) -> JSONObject:
    return {"requestBody": {"required": required, **json_body(schema)}}
