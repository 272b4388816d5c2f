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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents import __version__
from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.responses import MAX_LIMIT, PROBLEM_JSON, json_response
from incidents.errors import all_error_classes
from incidents.model.schemas import ADAPTERS_DIR

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
COMPONENTS = "components"  # the key under which openapi_paths() may add named schemas

# A JSON object in the document (schemas, operations, responses).
JSONObject = dict[str, object]
PathSource = Callable[[], Mapping[str, object]]


def component_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def adapter_schema_ref(name: str) -> dict[str, str]:
    """The payload schema of an inbound adapter (``schemas/adapters/<name>.json``)."""
    return component_ref(f"adapter.{name}")


def any_case(text: str) -> str:
    """A regular expression for ``text`` in any letter case (JSON Schema has no flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


def problem(description: str) -> JSONObject:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def errors(*codes: int) -> dict[str, JSONObject]:
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
        503: "Redis unavailable (store-unavailable) or full (redis-full); retry after"
        " Retry-After seconds",
    }
    return {str(c): problem(text[c]) for c in codes}


def json_body(schema: Mapping[str, object], description: str = "") -> JSONObject:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def query_param(name: str, schema: Mapping[str, object], description: str = "") -> JSONObject:
    """An OpenAPI query parameter."""
    param: JSONObject = {"name": name, "in": "query", "schema": schema}
    if description:
        param["description"] = description
    return param


PAGING = (
    "A page at a time: follow next_cursor (pass it as cursor) until it is null. A page may "
    "hold fewer than limit items, even none, while next_cursor is not null: each request "
    "reads a bounded stretch of the index. offset (skip that many matches) is kept for "
    "older clients; it costs what it skips."
)
PAGE_PARAMS: list[JSONObject] = [
    query_param("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}),
    query_param("cursor", {"type": "string"}, "next_cursor from the previous page"),
    query_param("offset", {"type": "integer", "minimum": 0}, "kept for older clients"),
]
NEXT_CURSOR: JSONObject = {
    "type": ["string", "null"],
    "description": "pass as cursor for the next page; null when nothing is left",
}


def page_body(name: str, item: Mapping[str, object], description: str) -> JSONObject:
    """A listing's 200 body: ``{name: [item, ...], "count": n, "next_cursor": ...}``."""
    return json_body(
        {
            "type": "object",
            "properties": {
                name: {"type": "array", "items": item},
                "count": {"type": "integer"},
                "next_cursor": NEXT_CURSOR,
            },
        },
        description,
    )


def _problem_schema() -> JSONObject:
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


def _rebased(schema: object, name: str) -> object:
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


def _cloudevent(event_types: Iterable[str]) -> JSONObject:
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


def adapter_schemas(schemas_dir: Path) -> dict[str, object]:
    """The inbound adapters' payload schemas, by adapter name."""
    found: dict[str, object] = {}
    for path in sorted((schemas_dir / ADAPTERS_DIR).glob("*.json")):
        found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return found


def build(
    raw_schemas: Mapping[str, object],
    sources: Iterable[PathSource],
    adapters: Mapping[str, object] | None = None,
) -> JSONObject:
    paths: dict[str, JSONObject] = {}
    schemas: JSONObject = {"Problem": _problem_schema()}
    for source in sources:
        for path, item in source().items():
            if not isinstance(item, Mapping):
                raise TypeError(f"{path}: an OpenAPI path item must be an object")
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


def openapi_paths() -> JSONObject:
    return {
        "/openapi.json": {
            "get": {
                "summary": "This document (OpenAPI 3.1)",
                "responses": {"200": json_body({"type": "object"})},
            }
        },
    }


class OpenAPIDocument:
    """The document of one app, built when first asked for (start-up stays quick) and kept."""

    def __init__(
        self, raw_schemas: Mapping[str, object], sources: Iterable[PathSource], schemas_dir: Path
    ) -> None:
        self._raw_schemas = raw_schemas
        self._sources = list(sources)
        self._schemas_dir = schemas_dir
        self._document: JSONObject | None = None

    def get(self) -> JSONObject:
        if self._document is None:
            adapters = adapter_schemas(self._schemas_dir)
            self._document = build(self._raw_schemas, self._sources, adapters)
        return self._document


async def get_openapi(request: Request) -> Response:
    return json_response(services(request).get(OpenAPIDocument).get())


def routes() -> list[Route]:
    return [Route("/openapi.json", get_openapi, methods=["GET"])]
