"""``GET /openapi.json``: an OpenAPI 3.1 description of every endpoint that exists.

Each route module describes its own paths in an ``openapi_paths()`` function; this module
adds the shared components (problem details, the CloudEvent envelope, each type's data schema).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents import __version__
from incidents.errors import all_error_classes
from incidents.http import PROBLEM_JSON, json_response
from incidents.services import services

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PathSource = Callable[[], dict[str, Any]]


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def errors(*codes: int) -> dict[str, Any]:
    """Standard problem responses for the given status codes."""
    text = {
        400: "Malformed request or not a valid CloudEvent",
        401: "No or bad token",
        403: "Denied by policy",
        404: "Not found",
        409: "Conflict or illegal state transition",
        413: "Body too large",
        415: "Unsupported content type",
        422: "Data fails its JSON Schema",
        429: "Rate limited",
        503: "Redis unavailable; retry after Retry-After seconds",
    }
    return {str(c): problem(text[c]) for c in codes}


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def query_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An OpenAPI query parameter."""
    param: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description:
        param["description"] = description
    return param


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "enum": sorted({c.type_uri() for c in all_error_classes()})},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "pointer": {"type": "string", "description": "JSON pointer (RFC 6901)"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    }


def build(raw_schemas: dict[str, Any], sources: Iterable[PathSource]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for source in sources:
        for path, item in source().items():
            paths.setdefault(path, {}).update(item)
    schemas: dict[str, Any] = {"Problem": _problem_schema()}
    for name, schema in raw_schemas.items():
        clean = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
        schemas["CloudEvent" if name == "cloudevent" else name] = clean
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "incidents",
            "version": __version__,
            "description": "Gateway and router for incident-management events.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_paths() -> dict[str, Any]:
    return {
        "/openapi.json": {
            "get": {
                "summary": "This document (OpenAPI 3.1)",
                "responses": {"200": json_body({"type": "object"})},
            }
        },
    }


async def get_openapi(request: Request) -> Response:
    svc = services(request)
    doc = svc.extras.get("openapi")
    if doc is None:
        doc = build(svc.registry.raw, request.app.state.openapi_sources)
        svc.extras["openapi"] = doc
    return json_response(doc)


def routes() -> list[Route]:
    return [Route("/openapi.json", get_openapi, methods=["GET"])]
