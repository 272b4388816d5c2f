"""HTTP endpoints: ``/v1/subscriptions`` (+ deliveries, replay, rotate-secret) and
``/v1/dead-letters``. Subscribers see and manage only their own subscriptions; admins all."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.auth import Principal, caller
from incidents.delivery.attempt_log import iso
from incidents.delivery.fanout import replay
from incidents.delivery.handshake import handshake
from incidents.delivery.lanes import DEAD, PENDING, Ledger
from incidents.delivery.sinks import INSECURE, check_url, sink_problem
from incidents.delivery.subscription_spec import SubscriptionStatus, parse_spec
from incidents.delivery.subscriptions import (
    Subscription,
    SubscriptionStore,
    new_subscription,
    rotated,
)
from incidents.errors import Conflict, FieldError, InvalidRequest, NotFound
from incidents.http import json_response
from incidents.openapi import (
    BEARER,
    COMPONENTS,
    JSONObject,
    any_case,
    component_ref,
    errors,
    json_body,
    query_param,
)
from incidents.request_body import parse_json, read_body
from incidents.services import Services, services

_LIMIT = re.compile(r"[0-9]{1,7}")
ACTIVE, DISABLED = SubscriptionStatus


def _now(svc: Services) -> datetime:
    """The app's clock (``create_app(clock=...)``), which also stamps accepted events."""
    return svc.ingestor.clock()


async def _json(request: Request) -> object:
    """The body as JSON within the size and nesting limits; an empty body is ``{}``."""
    settings = services(request).settings
    body = await read_body(request, settings.max_body_bytes)
    if not body.strip():
        return {}
    return parse_json(body, max_depth=settings.max_json_depth)


async def _caller(request: Request) -> tuple[Services, Principal]:
    svc = services(request)
    principal = caller(request)
    principal.require("subscriber")
    return svc, principal


async def _owned(request: Request) -> tuple[Services, Principal, Subscription]:
    svc, principal = await _caller(request)
    sub_id = request.path_params["id"]
    sub = await SubscriptionStore(svc.redis).get(sub_id)
    if sub is None or not (principal.is_admin or sub.owner == principal.id):
        raise NotFound(f"no subscription {sub_id!r}")
    return svc, principal, sub


async def _check_sink(svc: Services, sink: str) -> None:
    problem = await sink_problem(
        sink, svc.settings.allow_private_sinks, allow_insecure=svc.settings.allow_insecure_sinks
    )
    if problem is not None:
        raise InvalidRequest(f"sink refused: {problem}", errors=[FieldError("/sink", problem)])


def _check_secure(svc: Services, sink: str) -> None:
    """An unchanged sink kept active must still be one that may be called."""
    checked = check_url(sink)
    if not svc.settings.allow_insecure_sinks and not (
        isinstance(checked, tuple) and checked[0] == "https"
    ):
        raise InvalidRequest(f"sink refused: {INSECURE}", errors=[FieldError("/sink", INSECURE)])


async def _handshake(request: Request, svc: Services, sub: Subscription) -> Subscription:
    origin = request.url.hostname or "incidents"
    result = await handshake(
        sub.spec.sink,
        origin,
        svc.settings.allow_private_sinks,
        svc.settings.delivery_timeout,
        allow_insecure=svc.settings.allow_insecure_sinks,
    )
    if result.allowed:
        return replace(sub, status=ACTIVE, reason="", rate=result.rate, origin=origin)
    return replace(sub, status=DISABLED, reason=result.reason, rate=None, origin=None)


async def create(request: Request) -> Response:
    svc, principal = await _caller(request)
    spec, _ = parse_spec(await _json(request))
    await _check_sink(svc, spec.sink)
    sub = new_subscription(spec, principal.id, _now(svc))
    if spec.handshake:
        sub = await _handshake(request, svc, sub)
    await SubscriptionStore(svc.redis).save(sub)
    body = sub.to_dict()
    body["secret"] = sub.secrets[0].value
    return json_response(body, status=201, headers={"Location": f"/v1/subscriptions/{sub.id}"})


async def list_all(request: Request) -> Response:
    svc, principal = await _caller(request)
    owner = None if principal.is_admin else principal.id
    if principal.is_admin and "owner" in request.query_params:
        owner = request.query_params["owner"]
    subs = await SubscriptionStore(svc.redis).list(owner)
    return json_response({"subscriptions": [s.to_dict() for s in subs]})


async def get_one(request: Request) -> Response:
    _, _, sub = await _owned(request)
    return json_response(sub.to_dict())


async def patch(request: Request) -> Response:
    svc, _, sub = await _owned(request)
    spec, status = parse_spec(await _json(request), base=sub.spec)
    if spec.sink != sub.spec.sink:
        await _check_sink(svc, spec.sink)
    elif status == "active" or (status is None and sub.active):
        _check_secure(svc, spec.sink)
    updated = replace(sub, spec=spec, updated_at=_now(svc).isoformat())
    if not spec.handshake:
        # a rate and an origin are only ever granted by a handshake
        updated = replace(updated, rate=None, origin=None)
    if status == "disabled":
        updated = replace(updated, status=DISABLED, reason="disabled by its owner")
    else:
        if status == "active" and sub.status != "active":
            updated = replace(updated, status=ACTIVE, reason="")
        # A new sink (or a newly asked handshake) must agree before anything is sent to it,
        # whether or not the patch also says "active".
        unconfirmed = sub.status != "active" or spec.sink != sub.spec.sink or not sub.spec.handshake
        if updated.status == "active" and spec.handshake and unconfirmed:
            updated = await _handshake(request, svc, updated)
    store = SubscriptionStore(svc.redis)
    await store.save(updated, previous=sub)
    return json_response(updated.to_dict())


async def delete(request: Request) -> Response:
    svc, _, sub = await _owned(request)
    await SubscriptionStore(svc.redis).delete(sub)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    svc, _, sub = await _owned(request)
    when = _now(svc)
    now = when.timestamp()
    updated = rotated(sub, now, svc.settings.secret_grace, when.isoformat())
    await SubscriptionStore(svc.redis).save(updated, previous=sub)
    return json_response(
        {
            "id": sub.id,
            "secret": updated.secrets[0].value,
            "previous_secrets_valid_until": iso(now + svc.settings.secret_grace),
        }
    )


def _limit(request: Request, default: int = 100, most: int = 1000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"limit={raw!r} must be a whole number from 1 to {most}")
    return int(raw)


async def deliveries(request: Request) -> Response:
    svc, principal = await _caller(request)
    viewer = svc.queries.viewer(principal)
    log = await svc.queries.deliveries.log(viewer, request.path_params["id"], _limit(request))
    sub = log.subscription
    return json_response({"subscription": sub.id, "status": sub.status, "attempts": log.attempts})


async def replay_since(request: Request) -> Response:
    svc, _, sub = await _owned(request)
    body = await _json(request)
    raw = body.get("since") if isinstance(body, dict) else None
    try:
        since = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise InvalidRequest(
            f"since={raw!r} must be an RFC 3339 time with a zone, e.g. 2024-05-01T00:00:00Z",
            errors=[FieldError("/since", "an RFC 3339 time with a zone is required")],
        )
    if not sub.active:
        raise Conflict(f"subscription {sub.id!r} is disabled ({sub.reason}); enable it first")
    done = await replay(svc.redis, sub, since, clock=lambda: _now(svc).timestamp())
    return json_response(
        {
            "subscription": sub.id,
            "queued": done.queued,
            "first_sequence": done.first_sequence,
            "last_sequence": done.last_sequence,
        },
        status=202,
    )


async def dead_letters(request: Request) -> Response:
    svc = services(request)
    caller(request).require("admin")
    found = await svc.queries.deliveries.dead_letters(_limit(request))
    return json_response({"dead_letters": found})


async def redrive(request: Request) -> Response:
    svc = services(request)
    caller(request).require("admin")
    delivery_id = request.path_params["id"]
    ledger = Ledger(svc.redis)
    found = await ledger.get(delivery_id)
    if found is None or found.state != DEAD:
        raise NotFound(f"no dead letter {delivery_id!r}")
    sub = await SubscriptionStore(svc.redis).get(found.sub)
    if sub is None:
        raise Conflict(f"the subscription {found.sub!r} of {delivery_id!r} no longer exists")
    if not sub.active:
        raise Conflict(f"subscription {sub.id!r} is disabled ({sub.reason}); enable it first")
    again = replace(found, state=PENDING, attempts=0, next_at=None, reason="")
    await ledger.enqueue([again], _now(svc).timestamp(), force=True)
    return json_response(again.to_dict(), status=202)


def routes() -> list[Route]:
    return [
        Route("/v1/subscriptions", create, methods=["POST"]),
        Route("/v1/subscriptions", list_all, methods=["GET"]),
        Route("/v1/subscriptions/{id}", get_one, methods=["GET"]),
        Route("/v1/subscriptions/{id}", patch, methods=["PATCH"]),
        Route("/v1/subscriptions/{id}", delete, methods=["DELETE"]),
        Route("/v1/subscriptions/{id}/rotate-secret", rotate_secret, methods=["POST"]),
        Route("/v1/subscriptions/{id}/deliveries", deliveries, methods=["GET"]),
        Route("/v1/subscriptions/{id}/replay", replay_since, methods=["POST"]),
        Route("/v1/dead-letters", dead_letters, methods=["GET"]),
        Route("/v1/dead-letters/{id}/redrive", redrive, methods=["POST"]),
    ]


SUBSCRIPTION = {
    "type": "object",
    "required": ["sink"],
    "properties": {
        "id": {"type": "string", "readOnly": True},
        "sink": {"type": "string", "format": "uri"},
        "protocol": {"const": "HTTP"},
        "types": {"type": "array", "items": {"type": "string"}},
        "source": {"type": ["string", "null"]},
        "filters": {"type": "array", "items": {"type": "object"}},
        "protocolsettings": {
            "type": "object",
            "properties": {
                "headers": {"type": "object", "additionalProperties": {"type": "string"}}
            },
        },
        "config": {
            "type": "object",
            "properties": {
                "mode": {"enum": ["structured", "binary"]},
                "handshake": {"type": "boolean"},
            },
        },
        "description": {"type": "string"},
        "status": {"enum": ["active", "disabled"]},
        "reason": {"type": ["string", "null"], "readOnly": True},
        "rate": {
            "type": ["integer", "null"],
            "readOnly": True,
            "description": "deliveries per minute granted by the handshake",
        },
        "origin": {
            "type": ["string", "null"],
            "readOnly": True,
            "description": "the WebHook-Request-Origin the handshake granted",
        },
        "secret": {"type": "string", "readOnly": True, "description": "on create only"},
    },
}
ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
OBJ: JSONObject = {"type": "object"}
LIMIT = [query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})]
FILTER = "SubscriptionFilter"
REPLAY = {
    "type": "object",
    "required": ["since"],
    "properties": {
        "since": {
            "type": "string",
            "format": "date-time",
            "description": "deliver again every stored event accepted since this time",
        }
    },
}
REPLAYED = {
    "type": "object",
    "properties": {
        "subscription": {"type": "string"},
        "queued": {"type": "integer"},
        "first_sequence": {"type": ["integer", "null"]},
        "last_sequence": {"type": ["integer", "null"]},
    },
}


def _exactly(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _subscription_input(create: bool) -> JSONObject:
    """What POST (``create``) or PATCH accepts: unknown fields are refused; the read-only ones
    a client may send back are ignored (and ``status`` is read only on create)."""
    from incidents.delivery import subscription_spec as spec
    from incidents.delivery.channels import cloudevents
    from incidents.delivery.filters import MAX_DEPTH, MAX_TERMS

    reserved = [any_case(h) + "$" for h in cloudevents.RESERVED_HEADERS] + [
        any_case(p) for p in cloudevents.RESERVED_PREFIXES
    ]
    fields: JSONObject = {
        "sink": {
            "type": "string",
            "format": "uri",
            "maxLength": 2048,
            "description": "the webhook URL; https unless INCIDENTS_ALLOW_INSECURE_SINKS",
        },
        "protocol": {"enum": ["HTTP", None]},
        "types": {
            "type": ["array", "null"],
            "maxItems": spec.MAX_TYPES,
            "items": {"type": "string", "pattern": _exactly(spec._TYPE.pattern)},
            "description": "event types, or prefixes ending in *; none: every type",
        },
        "source": {"type": ["string", "null"], "minLength": 1, "maxLength": spec.MAX_SOURCE},
        "filters": {
            "type": ["array", "null"],
            "items": component_ref(FILTER),
            "description": "CloudEvents Subscriptions API filters; all must match. all, any"
            f" and not nest at most {MAX_DEPTH} deep; at most {MAX_TERMS} expressions and"
            " attribute tests in all",
        },
        "protocolsettings": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "headers": {
                    "type": ["object", "null"],
                    "description": "extra headers sent with each delivery (printable ASCII"
                    f" values, at most {spec.MAX_HEADER_BYTES} bytes of names and values)",
                    "maxProperties": spec.MAX_HEADERS,
                    "propertyNames": {
                        "pattern": _exactly(spec._TOKEN.pattern),
                        "not": {"pattern": f"^(?:{'|'.join(reserved)})"},
                    },
                    "additionalProperties": {
                        "type": "string",
                        "pattern": _exactly(spec._FIELD_VALUE.pattern),
                    },
                }
            },
        },
        "config": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {"mode": {"enum": list(spec.MODES)}, "handshake": {"type": "boolean"}},
        },
        "description": {"type": ["string", "null"], "maxLength": 1000},
    }
    read_only = {name: {"readOnly": True, "description": "ignored"} for name in spec.READ_ONLY}
    if not create:
        read_only["status"] = {"enum": list(spec.STATUSES)}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["sink"] if create else [],
        "properties": read_only | fields,
    }


def _filter_schema() -> JSONObject:
    """One filter expression: an object with exactly one dialect key."""
    from incidents.delivery.filters import DIALECTS, MAX_VALUE

    def compare(non_empty: bool) -> JSONObject:
        return {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z0-9]{1,20}$"},
            "additionalProperties": {
                "type": "string",
                "minLength": 1 if non_empty else 0,
                "maxLength": MAX_VALUE,
            },
        }

    nested = {"type": "array", "minItems": 1, "items": component_ref(FILTER)}
    dialects = {
        "exact": compare(False),
        "prefix": compare(True),
        "suffix": compare(True),
        "all": nested,
        "any": nested,
        "not": component_ref(FILTER),
    }
    assert set(dialects) == set(DIALECTS)
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": dialects,
    }


def openapi_paths() -> JSONObject:
    def op(
        summary: str,
        ok: str,
        ok_text: str,
        *codes: int,
        schema: Mapping[str, object] = OBJ,
        **more: object,
    ) -> JSONObject:
        return {
            "summary": summary,
            "security": BEARER,
            "responses": {ok: json_body(schema, ok_text), **errors(*codes)},
            **more,
        }

    def body(schema: Mapping[str, object], required: bool = True) -> JSONObject:
        return {"requestBody": {"required": required, **json_body(schema)}}

    owner = [query_param("owner", {"type": "string"}, "admins: only this owner's")]
    return {
        COMPONENTS: {FILTER: _filter_schema()},
        "/v1/subscriptions": {
            "post": op("Register a webhook", "201", "Created; carries the secret once",
                       400, 401, 403, 503, schema=SUBSCRIPTION, **body(_subscription_input(True))),
            "get": op("List subscriptions (your own; admins see all)", "200", "Subscriptions",
                      401, 403, 503, parameters=owner),
        },
        "/v1/subscriptions/{id}": {
            "get": op("Read a subscription", "200", "The subscription", 401, 403, 404, 503,
                      schema=SUBSCRIPTION, parameters=ID),
            "patch": op("Change a subscription (or set status active/disabled)", "200",
                        "The subscription", 400, 401, 403, 404, 503, schema=SUBSCRIPTION,
                        parameters=ID, **body(_subscription_input(False), required=False)),
            "delete": {"summary": "Delete a subscription", "security": BEARER, "parameters": ID,
                       "responses": {"204": {"description": "Deleted"},
                                     **errors(401, 403, 404, 503)}},
        },
        "/v1/subscriptions/{id}/rotate-secret": {
            "post": op("New secret; the old one keeps signing for INCIDENTS_SECRET_GRACE", "200",
                       "The new secret", 401, 403, 404, 503, parameters=ID),
        },
        "/v1/subscriptions/{id}/deliveries": {
            "get": op("Delivery attempts, newest first", "200", "The attempt log",
                      400, 401, 403, 404, 503, parameters=ID + LIMIT),
        },
        "/v1/subscriptions/{id}/replay": {
            "post": op("Deliver again the stored events since a time", "202", "Queued",
                       400, 401, 403, 404, 409, 503, parameters=ID, schema=REPLAYED,
                       **body(REPLAY)),
        },
        "/v1/dead-letters": {
            "get": op("Deliveries that exhausted their retries", "200", "Dead letters",
                      400, 401, 403, 503, parameters=LIMIT),
        },
        "/v1/dead-letters/{id}/redrive": {
            "post": op("Queue a dead letter again", "202", "Queued", 401, 403, 404, 409, 503,
                       parameters=ID),
        },
    }  # fmt: skip
