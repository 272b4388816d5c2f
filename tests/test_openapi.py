"""GET /openapi.json describes every endpoint that exists."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from incidents.app import create_app
from incidents.settings import Settings


def test_every_route_is_described(settings: Settings, anon: httpx.Client) -> None:
    """Each method and path the app serves appears in the OpenAPI document, and nothing else."""
    doc = anon.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    app = create_app(settings)
    served = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                served.add((method.lower(), path))
    described = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert served == described


# Endpoints that speak another product's wire format answer errors in that format.
FOREIGN_ERROR_FORMATS = {"/v2/enqueue"}


def test_operations_document_their_errors_as_problems(anon: httpx.Client) -> None:
    """Every 4xx/5xx response in the document uses the Problem schema."""
    doc = anon.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], (method, path)
            for code, response in op["responses"].items():
                if not code.startswith(("4", "5")):
                    continue
                if path in FOREIGN_ERROR_FORMATS:
                    assert response["content"], (method, path, code)
                    continue
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, code)


def test_event_schemas_are_included(anon: httpx.Client) -> None:
    """The CloudEvent envelope and each event type's data schema are components."""
    schemas = anon.get("/openapi.json").json()["components"]["schemas"]
    assert "CloudEvent" in schemas and "Problem" in schemas
    assert "im.incident.declare" in schemas
