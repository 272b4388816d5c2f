"""``/v1/principals``: admins create, list and revoke API principals."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import BEARER, errors, json_body
from incidents.api.toolkit.request_body import read_json
from incidents.api.toolkit.responses import SHOWS_A_SECRET, json_response
from incidents.errors import Conflict, FieldError, InvalidRequest, NotFound
from incidents.model.principal import ADMIN, CLEARANCES, DEFAULT_TENANT, ROLES, Principal
from incidents.policy.principals import NameTaken, PrincipalStore, principal_to_dict

TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
PATTERN_RE = re.compile(r"^[A-Za-z0-9.*?\[\]_:/-]{1,200}$")
FIELDS = ("name", "roles", "tenant", "clearance", "restricted", "publish")


def parse_principal(body: object) -> Principal:
    """A principal template from a request body; every problem is reported with a pointer."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "the body must be a JSON object", errors=[FieldError("", "not an object")]
        )
    problems: list[FieldError] = []
    for key in body:
        if key not in FIELDS:
            problems.append(FieldError(f"/{key}", f"unknown field; fields are {', '.join(FIELDS)}"))
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "," in name:
        problems.append(FieldError("/name", f"{name!r} must be 1 to 200 characters, no commas"))
    roles = body.get("roles")
    if (
        not isinstance(roles, list)
        or not roles
        or not all(isinstance(r, str) and r in ROLES for r in roles)
    ):
        problems.append(FieldError("/roles", f"{roles!r} must be a non-empty list of {ROLES}"))
    tenant = body.get("tenant", DEFAULT_TENANT)
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        problems.append(FieldError("/tenant", f"{tenant!r} must be 1 to 63 of [A-Za-z0-9._-]"))
    clearance = body.get("clearance", "internal")
    if clearance not in CLEARANCES:
        problems.append(FieldError("/clearance", f"{clearance!r} is not one of {CLEARANCES}"))
    restricted = body.get("restricted", False)
    if not isinstance(restricted, bool):
        problems.append(FieldError("/restricted", f"{restricted!r} must be true or false"))
    publish = body.get("publish", [])
    if not isinstance(publish, list):
        problems.append(FieldError("/publish", f"{publish!r} must be a list of type patterns"))
        publish = []
    for i, p in enumerate(publish):
        if not isinstance(p, str) or not PATTERN_RE.match(p):
            problems.append(FieldError(f"/publish/{i}", f"{p!r} is not a type pattern"))
    if problems:
        raise InvalidRequest(
            f"the principal is not valid ({len(problems)} problem(s))", errors=problems
        )
    return Principal(
        id="new",
        name=str(name).strip(),
        roles=frozenset(roles or ()),
        tenant=str(tenant),
        clearance=str(clearance),
        restricted=bool(restricted),
        publish=tuple(publish),
    )


async def create_principal(request: Request) -> Response:
    svc = services(request)
    caller(request).require(ADMIN)
    body = await read_json(request, svc.settings)
    template = parse_principal(body)
    try:
        created = await svc.get(PrincipalStore).create(template, datetime.now(UTC))
    except NameTaken as exc:
        raise Conflict(str(exc), extra={"existing": exc.existing_id}) from exc
    out = principal_to_dict(created.principal)
    out["created_at"] = created.created_at
    out["token"] = created.token  # shown this once; only its hash is kept
    return json_response(
        out,
        status=201,
        headers={"Location": f"/v1/principals/{created.principal.id}", **SHOWS_A_SECRET},
    )


async def list_principals(request: Request) -> Response:
    svc = services(request)
    caller(request).require(ADMIN)
    rows = await svc.get(PrincipalStore).list()
    return json_response(
        {"principals": [principal_to_dict(p) | {"created_at": c} for p, c in rows]}
    )


async def get_principal(request: Request) -> Response:
    svc = services(request)
    caller(request).require(ADMIN)
    principal_id = request.path_params["id"]
    found = await svc.get(PrincipalStore).get(principal_id)
    if found is None:
        raise NotFound(f"no principal {principal_id!r}")
    return json_response(principal_to_dict(found[0]) | {"created_at": found[1]})


async def delete_principal(request: Request) -> Response:
    svc = services(request)
    caller(request).require(ADMIN)
    principal_id = request.path_params["id"]
    if not await svc.get(PrincipalStore).revoke(principal_id):
        raise NotFound(f"no principal {principal_id!r}")
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/v1/principals", create_principal, methods=["POST"]),
        Route("/v1/principals", list_principals, methods=["GET"]),
        Route("/v1/principals/{id}", get_principal, methods=["GET"]),
        Route("/v1/principals/{id}", delete_principal, methods=["DELETE"]),
    ]


PRINCIPAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "roles"],
    "additionalProperties": False,
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "pattern": r"^[^,]*[^,\s][^,]*$",
            "description": "not blank, no commas",
        },
        "roles": {"type": "array", "minItems": 1, "items": {"enum": list(ROLES)}},
        "tenant": {"type": "string", "pattern": TENANT_RE.pattern, "default": DEFAULT_TENANT},
        "clearance": {"enum": list(CLEARANCES), "default": "internal"},
        "restricted": {"type": "boolean", "default": False},
        "publish": {
            "type": "array",
            "items": {"type": "string", "pattern": PATTERN_RE.pattern},
            "description": "event-type globs this producer may publish, e.g. im.alert.*",
        },
    },
}
PRINCIPAL_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **PRINCIPAL_SCHEMA["properties"],
        "id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
ID_PARAM = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def openapi_paths() -> dict[str, Any]:
    created = {
        **PRINCIPAL_OUT,
        "properties": {
            **PRINCIPAL_OUT["properties"],
            "token": {"type": "string", "description": "the bearer token; shown only here"},
        },
    }
    return {
        "/v1/principals": {
            "post": {
                "summary": "Create an API principal (admin); the response shows its token once",
                "security": BEARER,
                "requestBody": {"required": True, **json_body(PRINCIPAL_SCHEMA)},
                "responses": {
                    "201": json_body(created, "Created"),
                    **errors(400, 401, 403, 409, 413, 503),
                },
            },
            "get": {
                "summary": "List API principals (admin); tokens are never shown again",
                "security": BEARER,
                "responses": {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {"principals": {"type": "array", "items": PRINCIPAL_OUT}},
                        }
                    ),
                    **errors(401, 403, 503),
                },
            },
        },
        "/v1/principals/{id}": {
            "get": {
                "summary": "One API principal (admin)",
                "security": BEARER,
                "parameters": ID_PARAM,
                "responses": {"200": json_body(PRINCIPAL_OUT), **errors(401, 403, 404, 503)},
            },
            "delete": {
                "summary": "Revoke a principal and its token, at once on every replica (admin)",
                "security": BEARER,
                "parameters": ID_PARAM,
                "responses": {
                    "204": {"description": "Revoked"},
                    **errors(401, 403, 404, 503),
                },
            },
        },
    }
