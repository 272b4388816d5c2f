"""``GET /v1/alerts`` and ``GET /v1/alerts/{key}``: correlated alerts the caller may see."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.incident_routes import SEVERITY_ALIASES, SEVERITY_PARAM
from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import (
    BEARER,
    PAGE_PARAMS,
    PAGING,
    errors,
    json_body,
    page_body,
    query_param,
)
from incidents.api.toolkit.responses import json_response, page_params, page_response, parsed_param
from incidents.model.alert import ALERT_STATUSES, AlertStatus
from incidents.model.severity import Severity
from incidents.queries.alerts import AlertFilter
from incidents.queries.query_set import Queries

_STATUSES: dict[str, AlertStatus] = {s: s for s in ALERT_STATUSES}


def _status(raw: str) -> AlertStatus:
    if raw not in _STATUSES:
        raise ValueError(f"{raw!r} is not one of {', '.join(ALERT_STATUSES)}")
    return _STATUSES[raw]


def _severity(raw: str) -> str:
    return Severity.parse(raw).value


def _filter(request: Request) -> AlertFilter:
    return AlertFilter(
        parsed_param(request, "status", _status),
        parsed_param(request, "severity", _severity),
        request.query_params.get("incident"),
    )


async def list_route(request: Request) -> Response:
    queries = services(request).get(Queries)
    viewer = queries.viewer(caller(request))
    page = await queries.alerts.page(viewer, _filter(request), page_params(request))
    return page_response("alerts", page)


async def get_route(request: Request) -> Response:
    queries = services(request).get(Queries)
    principal = caller(request)
    tenant = request.query_params.get("tenant", principal.tenant)
    found = await queries.alerts.get(queries.viewer(principal), tenant, request.path_params["key"])
    return json_response(found)


def routes() -> list[Route]:
    return [
        Route("/v1/alerts", list_route, methods=["GET"]),
        Route("/v1/alerts/{key:path}", get_route, methods=["GET"]),
    ]


ALERT = {
    "type": "object",
    "required": ["key", "number", "status", "summary", "severity", "count"],
    "properties": {
        "key": {"type": "string", "description": "the correlation key"},
        "tenant": {"type": "string"},
        "number": {"type": "integer", "description": "1 for the first alert on this key, +1 "
                   "each time it triggers again after resolving"},
        "status": {"enum": list(ALERT_STATUSES)},
        "summary": {"type": "string"},
        "severity": {"enum": [s.value for s in Severity]},
        "source": {"type": "string"},
        "count": {"type": "integer", "description": "triggers seen while open"},
        "first_seen": {"type": "string", "format": "date-time"},
        "last_seen": {"type": "string", "format": "date-time"},
        "acknowledged_at": {"type": ["string", "null"]},
        "resolved_at": {"type": ["string", "null"]},
        "incident": {"type": ["string", "null"]},
        "source_url": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "links": {"type": "array"},
        "images": {"type": "array"},
        "last_event": {"type": "string"},
    },
}  # fmt: skip


def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/alerts": {
            "get": {
                "summary": "Correlated alerts the caller may see, most recently seen first",
                "description": PAGING,
                "security": BEARER,
                "parameters": [
                    query_param("status", {"enum": list(ALERT_STATUSES)}),
                    query_param("severity", SEVERITY_PARAM, SEVERITY_ALIASES),
                    query_param("incident", {"type": "string"}),
                    *PAGE_PARAMS,
                ],
                "responses": {
                    "200": page_body("alerts", ALERT, "Matching alerts"),
                    **errors(400, 401, 503),
                },
            }
        },
        "/v1/alerts/{key}": {
            "get": {
                "summary": "The current alert for a correlation key",
                "security": BEARER,
                "parameters": [
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
                    query_param("tenant", {"type": "string"}),
                ],
                "responses": {"200": json_body(ALERT, "The alert"), **errors(401, 404, 503)},
            }
        },
    }
