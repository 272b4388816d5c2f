"""``GET /v1/alerts`` and ``GET /v1/alerts/{key}``: correlated alerts the caller may see."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.alerts.alert import ALERT_INDEX, ALERT_STATUSES, Alert, alert_key
from incidents.errors import FieldError, InvalidRequest, NotFound
from incidents.http import json_response
from incidents.lifecycle.documents import read_many
from incidents.lifecycle.routes import MAX_LIMIT, SEVERITY_ALIASES, SEVERITY_PARAM, int_param
from incidents.model.severity import Severity
from incidents.openapi import BEARER, errors, json_body, query_param
from incidents.policy.access import may_see
from incidents.services import services
from incidents.store.redis import guarded

_SCAN = 500


def _bad(name: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, errors=[FieldError(f"/query/{name}", detail)])


async def list_route(request: Request) -> Response:
    svc = services(request)
    principal = await svc.auth.authenticate(request)
    params = request.query_params
    status = params.get("status")
    if status is not None and status not in ALERT_STATUSES:
        raise _bad("status", f"{status!r} is not one of {', '.join(ALERT_STATUSES)}")
    severity = None
    if "severity" in params:
        try:
            severity = Severity.parse(params["severity"]).value
        except ValueError as exc:
            raise _bad("severity", str(exc)) from None
    incident = params.get("incident")
    limit = int_param(request, "limit", 100, MAX_LIMIT)
    found: list[Alert] = []
    start = 0
    while len(found) < limit:
        async with guarded("listing alerts"):
            members = await svc.redis.zrevrange(ALERT_INDEX, start, start + _SCAN - 1)
        if not members:
            break
        start += len(members)
        keys = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        for doc in await read_many(svc.redis, keys):
            if doc is None:
                continue
            alert = Alert.from_dict(doc)
            if (
                (status is None or alert.status == status)
                and (severity is None or alert.severity == severity)
                and (incident is None or alert.incident == incident)
                and may_see(principal, alert.tenant, alert.visibility, alert.data_class)
            ):
                found.append(alert)
                if len(found) == limit:
                    break
    return json_response({"alerts": [a.to_dict() for a in found], "count": len(found)})


async def get_route(request: Request) -> Response:
    svc = services(request)
    principal = await svc.auth.authenticate(request)
    key = request.path_params["key"]
    tenant = request.query_params.get("tenant", principal.tenant)
    docs = await read_many(svc.redis, [alert_key(tenant, key)])
    alert = Alert.from_dict(docs[0]) if docs[0] is not None else None
    if alert is None or not may_see(principal, alert.tenant, alert.visibility, alert.data_class):
        raise NotFound(f"no alert with correlation key {key!r} in tenant {tenant!r}")
    return json_response(alert.to_dict())


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
                "security": BEARER,
                "parameters": [
                    query_param("status", {"enum": list(ALERT_STATUSES)}),
                    query_param("severity", SEVERITY_PARAM, SEVERITY_ALIASES),
                    query_param("incident", {"type": "string"}),
                    query_param("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}),
                ],
                "responses": {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "alerts": {"type": "array", "items": ALERT},
                                "count": {"type": "integer"},
                            },
                        },
                        "Matching alerts",
                    ),
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
