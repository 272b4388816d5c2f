"""GET /openapi.json describes every endpoint that exists."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from starlette.routing import Route

from incidents.app import create_app
from incidents.ingest.modes import STRUCTURED
from incidents.settings import Settings
from tests.support import event

JSON = "application/json"
FORMATS = Draft202012Validator.FORMAT_CHECKER


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


def test_every_path_template_declares_exactly_its_path_parameters(anon: httpx.Client) -> None:
    """Each operation declares, as required path parameters, every name its path template
    holds, and no path parameter its template does not hold."""
    doc = anon.get("/openapi.json").json()
    walked = 0
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            if method == "parameters":
                continue
            declared = [
                p
                for p in item.get("parameters", []) + operation.get("parameters", [])
                if p.get("in") == "path"
            ]
            assert {p["name"] for p in declared} == templated, f"{method.upper()} {path}"
            assert all(p.get("required") is True for p in declared), f"{method.upper()} {path}"
            walked += bool(templated)
    assert walked > 10  # the walk reached the templated paths


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


def body_schema(doc: dict[str, Any], path: str, method: str, media: str = JSON) -> Validator:
    """A validator for an operation's request body, resolving references into the document."""
    escaped = path.replace("~", "~0").replace("/", "~1")
    media = media.replace("/", "~1")
    pointer = f"#/paths/{escaped}/{method}/requestBody/content/{media}/schema"
    return Draft202012Validator({**doc, "$ref": pointer}, format_checker=FORMATS)


def parameter(doc: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    (found,) = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
    return dict(found)


@pytest.fixture
def doc(anon: httpx.Client) -> dict[str, Any]:
    return dict(anon.get("/openapi.json").json())


def test_unknown_subscription_and_principal_fields_are_refused_by_both(
    doc: dict[str, Any], client: httpx.Client
) -> None:
    """Where the server refuses an unknown field, the document says additionalProperties: false."""
    sink = "http://127.0.0.1:9/hook"
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/v1/subscriptions", {"sink": sink, "bogus": 1}),
        ("/v1/subscriptions", {"sink": sink, "config": {"mode": "binary", "bogus": True}}),
        ("/v1/subscriptions", {"sink": sink, "protocolsettings": {"bogus": {}}}),
        ("/v1/subscriptions", {"sink": sink, "filters": [{"exact": {"type": "x"}, "any": []}]}),
        ("/v1/principals", {"name": "p", "roles": ["producer"], "bogus": 1}),
    ]
    for path, body in cases:
        assert not body_schema(doc, path, "post").is_valid(body), body
        assert client.post(path, json=body).status_code == 400, body
    ok: dict[str, Any] = {"sink": sink, "config": {"mode": "binary"}}
    ok["filters"] = [{"prefix": {"type": "im."}}]
    assert body_schema(doc, "/v1/subscriptions", "post").is_valid(ok)
    assert client.post("/v1/subscriptions", json=ok).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant", "team-a.eu_1"),
        ("tenant", "-leading-dash"),
        ("tenant", "t" * 64),
        ("tenant", "has space"),
        ("publish", ["im.alert.*", "im.incident.note"]),
        ("publish", [""]),
        ("publish", ["im alert"]),
        ("name", " "),
        ("name", "a,b"),
    ],
)
def test_principal_patterns_agree_with_the_server(
    doc: dict[str, Any], client: httpx.Client, field: str, value: object
) -> None:
    """A principal's name, tenant and publish patterns are valid in the document iff accepted."""
    body: dict[str, Any] = {"name": "p", "roles": ["producer"], field: value}
    valid = body_schema(doc, "/v1/principals", "post").is_valid(body)
    assert valid == (client.post("/v1/principals", json=body).status_code == 201), body


def test_severity_and_status_query_parameters_are_enums(doc: dict[str, Any]) -> None:
    """The list endpoints name the severities and statuses they accept."""
    for path in ("/v1/incidents", "/v1/alerts"):
        assert parameter(doc, path, "get", "severity")["schema"]["enum"] == [
            "SEV1",
            "SEV2",
            "SEV3",
            "SEV4",
        ]
        assert "enum" in parameter(doc, path, "get", "status")["schema"]


def test_the_replay_body_is_described(doc: dict[str, Any], client: httpx.Client) -> None:
    """POST .../replay requires a body with since, an RFC 3339 time, as the server does."""
    sub = client.post("/v1/subscriptions", json={"sink": "http://127.0.0.1:9/h"}).json()
    path = "/v1/subscriptions/{id}/replay"
    assert doc["paths"][path]["post"]["requestBody"]["required"] is True
    replay = body_schema(doc, path, "post")
    for body in ({}, {"since": "yesterday"}):
        assert not replay.is_valid(body)
        assert client.post(f"/v1/subscriptions/{sub['id']}/replay", json=body).status_code == 400
    body = {"since": "2024-05-01T00:00:00Z"}
    assert replay.is_valid(body)
    assert client.post(f"/v1/subscriptions/{sub['id']}/replay", json=body).status_code == 202


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("/v1/ingest/alertmanager", {"version", "status", "alerts"}),
        ("/v1/ingest/grafana", {"status", "alerts"}),
        ("/v2/enqueue", {"routing_key", "event_action"}),
    ],
)
def test_adapter_bodies_name_their_required_fields(
    doc: dict[str, Any], path: str, required: set[str]
) -> None:
    """Each inbound adapter's body is the schema the gateway checks it with."""
    ref = doc["paths"][path]["post"]["requestBody"]["content"][JSON]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert required <= set(schema["required"])
    assert not body_schema(doc, path, "post").is_valid({})


def test_binary_mode_headers_are_listed(doc: dict[str, Any]) -> None:
    """POST /v1/events names the ce- headers that carry the attributes in binary mode."""
    names = {p["name"] for p in doc["paths"]["/v1/events"]["post"]["parameters"]}
    assert {"ce-specversion", "ce-id", "ce-source", "ce-type"} <= names


def test_event_data_is_tied_to_its_type(doc: dict[str, Any], client: httpx.Client) -> None:
    """The CloudEvent schema checks data against its type's schema, as the server does."""
    structured = body_schema(doc, "/v1/events", "post", STRUCTURED)
    good = event("im.incident.declare")
    assert structured.is_valid(good)
    bad = event("im.incident.declare", data={"title": "no severity or service"})
    assert not structured.is_valid(bad)
    headers = {"Content-Type": STRUCTURED}
    assert client.post("/v1/events", content=json.dumps(bad), headers=headers).status_code == 422
    assert client.post("/v1/events", content=json.dumps(good), headers=headers).status_code == 202
