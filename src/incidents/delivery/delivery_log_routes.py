"""HTTP endpoints of what was delivered: a subscription's delivery log and ``replay``
(``/v1/subscriptions/{id}/...``), and the dead letters with their ``redrive`` (admins)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.auth import caller
from incidents.delivery.fanout import replay
from incidents.delivery.lanes import DEAD, PENDING
from incidents.delivery.route_support import (
    ID,
    LIMIT,
    json_request,
    limit,
    now,
    operation,
    owned,
    request_body,
    subscriber,
)
from incidents.errors import Conflict, FieldError, InvalidRequest, NotFound
from incidents.http import json_response
from incidents.openapi import JSONObject
from incidents.services import services


async def deliveries(request: Request) -> Response:
    svc, principal = subscriber(request)
    viewer = svc.queries.viewer(principal)
    log = await svc.deliveries.log(viewer, request.path_params["id"], limit(request))
    sub = log.subscription
    return json_response({"subscription": sub.id, "status": sub.status, "attempts": log.attempts})


async def replay_since(request: Request) -> Response:
    svc, _, sub = await owned(request)
    body = await json_request(request)
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
    done = await replay(svc.redis, sub, since, clock=lambda: now(svc).timestamp())
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
    found = await svc.deliveries.dead_letters(limit(request))
    return json_response({"dead_letters": found})


async def redrive(request: Request) -> Response:
    svc = services(request)
    caller(request).require("admin")
    delivery_id = request.path_params["id"]
    lanes = svc.deliveries.lanes
    found = await lanes.get(delivery_id)
    if found is None or found.state != DEAD:
        raise NotFound(f"no dead letter {delivery_id!r}")
    sub = await svc.deliveries.subscriptions.get(found.sub)
    if sub is None:
        raise Conflict(f"the subscription {found.sub!r} of {delivery_id!r} no longer exists")
    if not sub.active:
        raise Conflict(f"subscription {sub.id!r} is disabled ({sub.reason}); enable it first")
    again = replace(found, state=PENDING, attempts=0, next_at=None, reason="")
    await lanes.enqueue([again], now(svc).timestamp(), force=True)
    return json_response(again.to_dict(), status=202)


def routes() -> list[Route]:
    return [
        Route("/v1/subscriptions/{id}/deliveries", deliveries, methods=["GET"]),
        Route("/v1/subscriptions/{id}/replay", replay_since, methods=["POST"]),
        Route("/v1/dead-letters", dead_letters, methods=["GET"]),
        Route("/v1/dead-letters/{id}/redrive", redrive, methods=["POST"]),
    ]


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


def openapi_paths() -> JSONObject:
    op, body = operation, request_body
    return {
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
