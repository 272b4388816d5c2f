"""HTTP endpoints of what was delivered: a subscription's delivery log and ``replay``
(``/v1/subscriptions/{id}/...``), the dead letters with their ``redrive`` (admins), and what
became of one event for each subscription (``GET /v1/events/{id}/routes``, served from
``api.ingest_routes``, before its catch-all ``/v1/events/{id}``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import JSONObject, query_param
from incidents.api.toolkit.responses import json_response
from incidents.api.toolkit.subscriber_endpoints import (
    ID,
    LIMIT,
    json_request,
    limit,
    operation,
    request_body,
    subscriber,
)
from incidents.connectors.channel_base import OutcomeKind
from incidents.delivery.lanes import DEAD, FILTER_ERROR, SILENCED, WITHHELD
from incidents.model.principal import ADMIN
from incidents.routing.explain import Fate
from incidents.usecases.delivery_actions import DeliveryActions, replay_since
from incidents.usecases.subscription_actions import SubscriptionActions


async def deliveries(request: Request) -> Response:
    svc, principal = subscriber(request)
    log = await svc.get(DeliveryActions).log(principal, request.path_params["id"], limit(request))
    sub = log.subscription
    return json_response({"subscription": sub.id, "status": sub.status, "attempts": log.attempts})


async def replay(request: Request) -> Response:
    svc, principal = subscriber(request)
    sub = await svc.get(SubscriptionActions).owned(principal, request.path_params["id"])
    body = await json_request(request)
    since = replay_since(body.get("since") if isinstance(body, dict) else None)
    done = await svc.get(DeliveryActions).replay(principal, sub, since)
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
    svc, principal = services(request), caller(request)
    principal.require(ADMIN)  # before the limit is judged
    found = await svc.get(DeliveryActions).dead_letters(principal, limit(request))
    return json_response({"dead_letters": found})


async def redrive(request: Request) -> Response:
    svc = services(request)
    again = await svc.get(DeliveryActions).redrive(caller(request), request.path_params["id"])
    return json_response(again.to_dict(), status=202)


async def event_routes(request: Request) -> Response:
    svc, principal = subscriber(request)
    source = request.query_params.get("source")
    event_id = request.path_params["id"]
    return json_response(await svc.get(DeliveryActions).event_routes(principal, event_id, source))


def routes() -> list[Route]:
    return [
        Route("/v1/subscriptions/{id}/deliveries", deliveries, methods=["GET"]),
        Route("/v1/subscriptions/{id}/replay", replay, methods=["POST"]),
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


NULLABLE_TEXT = {"type": ["string", "null"]}
# What an attempt log entry's outcome may be: an attempt's, or a delivery finished untried.
ATTEMPT_OUTCOMES = [
    *(k.value for k in OutcomeKind),
    *(s.value for s in (WITHHELD, SILENCED, FILTER_ERROR, DEAD)),
]
DELIVERY_LOG = {
    "type": "object",
    "required": ["subscription", "status", "attempts"],
    "properties": {
        "subscription": {"type": "string"},
        "status": {"type": "string"},
        "attempts": {"type": "array", "description": "newest first", "items": {
            "type": "object",
            "required": ["delivery", "webhook_id", "sequence", "attempt", "time", "outcome"],
            "properties": {
                "delivery": {"type": "string"}, "webhook_id": {"type": "string"},
                "sequence": {"type": "integer"}, "event_id": {"type": "string"},
                "type": {"type": "string"}, "incident": NULLABLE_TEXT,
                "attempt": {"type": "integer"},
                "time": {"type": "string", "format": "date-time"},
                "outcome": {"enum": ATTEMPT_OUTCOMES, "description": "delivered, gone, failed, "
                            "refused or skipped: an attempt; withheld: policy withheld it (rule); "
                            "silenced: a silence held it (silence); filter_error: the "
                            "subscription's sql filter failed on the event with an evaluation "
                            "error, so it was not sent (error names the expression and the "
                            "error); dead: dead-lettered"},
                "next_attempt": {"type": ["string", "null"], "format": "date-time"},
                "error": NULLABLE_TEXT,
                "status_code": {"type": ["integer", "null"]},
                "latency_ms": {"type": ["number", "null"]},
                "response": NULLABLE_TEXT,
                "request": {"type": "object", "properties": {
                    "method": {"type": "string"}, "url": {"type": "string"},
                    "body": {"type": "string"}}},
                "rule": NULLABLE_TEXT,
                "redacted": {"type": "array", "items": {"type": "string"}},
                "silence": {"type": "string"},
            },
        }},
    },
}  # fmt: skip


EVENT_ROUTES = {
    "type": "object",
    "required": ["event", "judged_at", "judged_on", "routes"],
    "properties": {
        "event": {"type": "object", "properties": {
            "id": {"type": "string"}, "source": {"type": "string"}, "type": {"type": "string"},
            "sequence": {"type": "integer"}}},
        "judged_at": {"type": "string", "format": "date-time"},
        "judged_on": {"type": "string", "description": "matching is judged on each "
                      "subscription as it is now, not as it was when the event was routed"},
        "routes": {"type": "array", "items": {
            "type": "object",
            "required": ["subscription", "route", "reason"],
            "properties": {
                "subscription": {"type": "string"},
                "route": {"enum": [f.value for f in Fate]},
                "reason": {"type": "string"},
                "failed": {"type": "object", "description": "not_matched: what did not match "
                           "(types, source, filter with its index and expression, or origin); "
                           "error: how an sql expression in the filter failed on the event"},
                "rule": {"type": "string", "description": "withheld: the policy rule"},
                "silence": {"type": "string", "description": "silenced: the silence that held "
                            "it (queued: the active silence that will)"},
                "delivery": {"type": "object", "description": "the delivery routing queued",
                             "properties": {
                                 "id": {"type": "string"}, "state": {"type": "string"},
                                 "attempts": {"type": "integer"},
                                 "next_attempt": {"type": ["number", "null"]},
                                 "last_status_code": {"type": ["integer", "null"]},
                                 "last_error": {"type": ["string", "null"]}}},
            },
        }},
    },
}  # fmt: skip
SOURCE = [query_param("source", {"type": "string"}, "when several sources used the id")]


def openapi_paths() -> JSONObject:
    op, body = operation, request_body
    return {
        "/v1/events/{id}/routes": {
            "get": op("What became of an event for each subscription (yours; admins: all)",
                      "200", "One route per subscription", 400, 401, 403, 404, 503,
                      schema=EVENT_ROUTES, parameters=ID + SOURCE),
        },
        "/v1/subscriptions/{id}/deliveries": {
            "get": op("Delivery attempts, newest first", "200", "The attempt log",
                      400, 401, 403, 404, 503, parameters=ID + LIMIT, schema=DELIVERY_LOG),
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
