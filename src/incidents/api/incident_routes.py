"""``GET /v1/incidents``, ``GET /v1/incidents/{id}``, ``GET /v1/incidents/{id}/timeline``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from incidents.api.toolkit.responses import (
    MAX_LIMIT,
    int_param,
    json_response,
    page_params,
    page_response,
    parsed_param,
)
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.queries.incidents import IncidentFilter
from incidents.queries.query_set import Queries


def _filter(request: Request) -> IncidentFilter:
    return IncidentFilter(
        parsed_param(request, "status", IncidentStatus.parse),
        parsed_param(request, "severity", Severity.parse),
        request.query_params.get("service"),
    )


async def list_route(request: Request) -> Response:
    queries = services(request).get(Queries)
    viewer = queries.viewer(caller(request))
    page = await queries.incidents.page(viewer, _filter(request), page_params(request))
    return page_response("incidents", page)


async def get_route(request: Request) -> Response:
    queries = services(request).get(Queries)
    viewer = queries.viewer(caller(request))
    return json_response(await queries.incidents.get(viewer, request.path_params["id"]))


async def timeline_route(request: Request) -> Response:
    queries = services(request).get(Queries)
    viewer = queries.viewer(caller(request))
    incident_id = request.path_params["id"]
    after = int_param(request, "after", 0)
    limit = int_param(request, "limit", MAX_LIMIT, MAX_LIMIT)
    entries = await queries.timelines.entries(viewer, incident_id, after, limit)
    return json_response({"incident": incident_id, "timeline": [e.to_dict() for e in entries]})


def routes() -> list[Route]:
    return [
        Route("/v1/incidents", list_route, methods=["GET"]),
        Route("/v1/incidents/{id}", get_route, methods=["GET"]),
        Route("/v1/incidents/{id}/timeline", timeline_route, methods=["GET"]),
    ]


INCIDENT = {
    "type": "object",
    "required": ["id", "title", "severity", "status", "version"],
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "summary": {"type": "string"},
        "severity": {"enum": [s.value for s in Severity]},
        "status": {"enum": [s.value for s in IncidentStatus]},
        "service": {"type": "string"},
        "roles": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "external_refs": {"type": "object", "additionalProperties": {"type": "string"}},
        **{
            name: {"type": ["string", "null"], "format": "date-time"}
            for name in (
                "declared_at",
                "acknowledged_at",
                "mitigated_at",
                "resolved_at",
                "closed_at",
                "updated_at",
            )
        },
        "version": {"type": "integer", "description": "the number of events applied"},
        "tenant": {"type": "string"},
        "data_class": {"type": "string"},
        "visibility": {"type": "string"},
        "metrics": {
            "type": "object",
            "description": "seconds from declaration; null until it happened",
            "properties": {
                "time_to_acknowledge": {"type": ["number", "null"]},
                "time_to_mitigate": {"type": ["number", "null"]},
                "time_to_resolve": {"type": ["number", "null"]},
            },
        },
    },
}
TIMELINE_ENTRY = {
    "type": "object",
    "properties": {
        name: {"type": "string"}
        for name in ("id", "incident_id", "type", "source", "time", "actor", "title", "body")
    }
    | {"sequence": {"type": "integer"}, "data": {}},
}
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
SEVERITY_PARAM = {"enum": [s.value for s in Severity]}
SEVERITY_ALIASES = "SEV1..SEV4; aliases such as SEV-1, sev1 or P1 are accepted too"


def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/incidents": {
            "get": {
                "summary": "Materialized incidents the caller may see, newest declared first",
                "description": PAGING,
                "security": BEARER,
                "parameters": [
                    query_param("status", {"enum": [s.value for s in IncidentStatus]}),
                    query_param("severity", SEVERITY_PARAM, SEVERITY_ALIASES),
                    query_param("service", {"type": "string"}),
                    *PAGE_PARAMS,
                ],
                "responses": {
                    "200": page_body("incidents", INCIDENT, "Matching incidents"),
                    **errors(400, 401, 503),
                },
            }
        },
        "/v1/incidents/{id}": {
            "get": {
                "summary": "One incident, with time-to-acknowledge, -mitigate and -resolve",
                "security": BEARER,
                "parameters": [ID_PARAM],
                "responses": {
                    "200": json_body(INCIDENT, "The incident"),
                    **errors(401, 404, 503),
                },
            }
        },
        "/v1/incidents/{id}/timeline": {
            "get": {
                "summary": "An incident's timeline in the order the gateway accepted its events",
                "security": BEARER,
                "parameters": [
                    ID_PARAM,
                    query_param("after", {"type": "integer", "minimum": 0}, "only sequences above"),
                    query_param("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}),
                ],
                "responses": {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "incident": {"type": "string"},
                                "timeline": {"type": "array", "items": TIMELINE_ENTRY},
                            },
                        },
                        "Timeline entries",
                    ),
                    **errors(400, 401, 404, 503),
                },
            }
        },
    }
