"""HTTP endpoints of silences: ``POST/GET /v1/silences``, ``GET/DELETE /v1/silences/{id}``.

Admins and subscribers may silence: an admin anything, a subscriber only its own
subscriptions (named in ``subscriptions``). Each sees and expires the silences it created
(admins all); another's is a 404, as another's subscription is. ``DELETE`` expires a silence
(it ends now and is kept, listed as expired)."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.toolkit.openapi_document import JSONObject, component_ref, query_param
from incidents.api.toolkit.responses import json_response
from incidents.api.toolkit.subscriber_endpoints import (
    ID,
    json_request,
    now,
    operation,
    request_body,
    subscriber,
)
from incidents.errors import InvalidRequest
from incidents.model.filters import FILTER
from incidents.silences.recurrence import DAYS
from incidents.silences.silence import MAX_COMMENT, MAX_SUBSCRIPTIONS, Silence, SilenceState
from incidents.usecases.silence_actions import SilenceActions


def _state(request: Request) -> SilenceState | None:
    raw = request.query_params.get("state")
    if raw is None:
        return None
    try:
        return SilenceState(raw)
    except ValueError:
        states = ", ".join(s.value for s in SilenceState)
        raise InvalidRequest(f"state={raw!r} is not one of {states}") from None


def _shown(silence: Silence, at: datetime) -> dict[str, object]:
    return silence.to_dict(at)


async def create(request: Request) -> Response:
    svc, principal = subscriber(request)
    silence = await svc.get(SilenceActions).create(principal, await json_request(request))
    return json_response(
        _shown(silence, now(svc)), status=201, headers={"Location": f"/v1/silences/{silence.id}"}
    )


async def list_all(request: Request) -> Response:
    svc, principal = subscriber(request)
    found = await svc.get(SilenceActions).visible(principal, _state(request))
    at = now(svc)
    return json_response({"silences": [_shown(s, at) for s in found]})


async def get_one(request: Request) -> Response:
    svc, principal = subscriber(request)
    found = await svc.get(SilenceActions).get(principal, request.path_params["id"])
    return json_response(_shown(found, now(svc)))


async def expire(request: Request) -> Response:
    svc, principal = subscriber(request)
    ended = await svc.get(SilenceActions).expire(principal, request.path_params["id"])
    return json_response(_shown(ended, now(svc)))


def routes() -> list[Route]:
    return [
        Route("/v1/silences", create, methods=["POST"]),
        Route("/v1/silences", list_all, methods=["GET"]),
        Route("/v1/silences/{id}", get_one, methods=["GET"]),
        Route("/v1/silences/{id}", expire, methods=["DELETE"]),
    ]


_TIME = {"type": "string", "format": "date-time"}
RECURRENCE = {
    "type": ["object", "null"],
    "description": "hold deliveries only inside weekly windows (wall-clock time in the zone; "
    "an end at or before the start closes the next day)",
    "required": ["weekly"],
    "additionalProperties": False,
    "properties": {
        "weekly": {
            "type": "object",
            "required": ["days", "start", "end"],
            "additionalProperties": False,
            "properties": {
                "days": {"type": "array", "minItems": 1, "uniqueItems": True,
                         "items": {"enum": list(DAYS)}},
                "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                "end": {"type": "string",
                        "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"},
                "timezone": {"type": "string", "default": "UTC",
                             "description": "an IANA time zone name"},
            },
        }
    },
}  # fmt: skip
SILENCE_INPUT = {
    "type": "object",
    "required": ["filter", "ends_at", "comment"],
    "additionalProperties": False,
    "properties": {
        "filter": {**component_ref(FILTER), "description": "one filter expression, any dialect"},
        "starts_at": {**_TIME, "description": "default: now"},
        "ends_at": {**_TIME, "description": "after starts_at, and in the future"},
        "comment": {"type": "string", "minLength": 1, "maxLength": MAX_COMMENT},
        "subscriptions": {
            "type": "array", "maxItems": MAX_SUBSCRIPTIONS, "uniqueItems": True,
            "items": {"type": "string"},
            "description": "the subscriptions it holds (your own); admins may leave it out "
            "to hold every subscription's deliveries",
        },
        "recurrence": RECURRENCE,
    },
}  # fmt: skip
SILENCE = {
    "type": "object",
    "required": ["id", "filter", "subscriptions", "starts_at", "ends_at", "comment", "state",
                 "created_by", "created_at"],
    "properties": {
        **SILENCE_INPUT["properties"],  # type: ignore[dict-item]  # a literal dict
        "id": {"type": "string"},
        "state": {"enum": [s.value for s in SilenceState],
                  "description": "pending: not started, or between its weekly windows"},
        "created_by": {"type": "string", "description": "the id of the principal"},
        "created_at": _TIME,
        "expired_by": {"type": ["string", "null"], "description": "who expired it by hand"},
    },
}  # fmt: skip
SILENCES = {"type": "object", "properties": {"silences": {"type": "array", "items": SILENCE}}}


def openapi_paths() -> JSONObject:
    op, body = operation, request_body
    state = [query_param("state", {"enum": [s.value for s in SilenceState]}, "only these")]
    return {
        "/v1/silences": {
            "post": op("Silence matching deliveries for a while", "201", "Created", 400, 401,
                       403, 409, 503, schema=SILENCE, **body(SILENCE_INPUT)),
            "get": op("List silences (your own; admins see all)", "200", "Silences", 400, 401,
                      403, 503, schema=SILENCES, parameters=state),
        },
        "/v1/silences/{id}": {
            "get": op("Read a silence", "200", "The silence", 401, 403, 404, 503,
                      schema=SILENCE, parameters=ID),
            "delete": op("Expire a silence (it ends now, and is kept as expired)", "200",
                         "The expired silence", 401, 403, 404, 503, schema=SILENCE,
                         parameters=ID),
        },
    }  # fmt: skip
