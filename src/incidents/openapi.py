"""``GET /openapi.json``: an OpenAPI 3.1 description of every endpoint that exists.

Each route module describes its own paths in an ``openapi_paths()`` function (which may also
give, under ``"components"``, named schemas its paths refer to); this module adds the shared
components: problem details, the CloudEvent (its envelope, with ``data`` tied to each type's
data schema) and the inbound adapters' payload schemas, all read from the schemas directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents import __version__
from incidents.adapters.common import ADAPTERS_DIR
from incidents.errors import all_error_classes
from incidents.http import PROBLEM_JSON, json_response
from incidents.services import services

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
COMPONENTS = "components"  # the key under which openapi_paths() may add named schemas

PathSource = Callable[[], dict[str, Any]]


def component_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def adapter_schema_ref(name: str) -> dict[str, str]:
    """The payload schema of an inbound adapter (``schemas/adapters/<name>.json``)."""
    return component_ref(f"adapter.{name}")


def any_case(text: str) -> str:
    """A regular expression for ``text`` in any letter case (JSON Schema has no flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


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


def _rebased(schema: Any, name: str) -> Any:
    """A schema file's own references (``#/$defs/...``) pointed at its place in the document."""
    if isinstance(schema, dict):
        return {
            k: (
                f"#/components/schemas/{name}/{v[2:]}"
                if k == "$ref" and isinstance(v, str) and v.startswith("#/")
                else _rebased(v, name)
            )
            for k, v in schema.items()
            if k not in ("$schema", "$id")
        }
    if isinstance(schema, list):
        return [_rebased(v, name) for v in schema]
    return schema


def _cloudevent(event_types: Iterable[str]) -> dict[str, Any]:
    """An event the gateway accepts: the envelope, and the data its type's schema asks for."""
    return {
        "allOf": [
            component_ref("CloudEventEnvelope"),
            {
                "oneOf": [
                    {
                        "properties": {"type": {"const": name}, "data": component_ref(name)},
                        "required": ["type", "data"],
                    }
                    for name in sorted(event_types)
                ]
            },
        ]
    }


def adapter_schemas(schemas_dir: Path) -> dict[str, Any]:
    """The inbound adapters' payload schemas, by adapter name."""
    found: dict[str, Any] = {}
    for path in sorted((schemas_dir / ADAPTERS_DIR).glob("*.json")):
        found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return found


def build(
    raw_schemas: Mapping[str, Any],
    sources: Iterable[PathSource],
    adapters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Problem": _problem_schema()}
    for source in sources:
        for path, item in source().items():
            if path == COMPONENTS:
                schemas.update(item)
            else:
                paths.setdefault(path, {}).update(item)
    for name, schema in raw_schemas.items():
        if name == "cloudevent":
            schemas["CloudEventEnvelope"] = _rebased(schema, "CloudEventEnvelope")
        else:
            schemas[name] = _rebased(schema, name)
    schemas["CloudEvent"] = _cloudevent(n for n in raw_schemas if n != "cloudevent")
    for name, schema in (adapters or {}).items():
        schemas[f"adapter.{name}"] = _rebased(schema, f"adapter.{name}")
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
            "schemas": dict(sorted(schemas.items())),
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
        doc = build(
            svc.registry.raw,
            request.app.state.openapi_sources,
            adapter_schemas(svc.settings.schemas_dir),
        )
        svc.extras["openapi"] = doc
    return json_response(doc)


def routes() -> list[Route]:
    return [Route("/openapi.json", get_openapi, methods=["GET"])]
