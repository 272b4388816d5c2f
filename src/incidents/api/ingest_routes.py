"""``POST /v1/events`` and reading stored events back."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api import delivery_log_routes
from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import BEARER, errors, json_body
from incidents.api.toolkit.request_body import LARGE_BODY, read_body
from incidents.api.toolkit.responses import json_response
from incidents.ingest.modes import BATCH, STRUCTURED, parse_request
from incidents.model.principal import PRODUCER
from incidents.off_loop import off_loop
from incidents.queries.query_set import Queries
from incidents.usecases.event_submission import EventSubmission


async def post_events(request: Request) -> Response:
    svc = services(request)
    with request.app.state.metrics.counting_events() as counted:
        principal = caller(request)
        principal.require(PRODUCER)
        settings = svc.settings
        body = await read_body(request, settings.max_body_bytes)
        parsed = await off_loop(
            len(body) > LARGE_BODY,
            parse_request,
            request.headers.get("content-type"),
            request.headers.raw,
            body,
            max_depth=settings.max_json_depth,
            max_batch=settings.max_batch_events,
        )
        batch = parsed.mode == "batch"
        done = counted(await svc.get(EventSubmission).submit(principal, parsed.events, batch))
    return json_response(
        {"mode": parsed.mode, "accepted": [a.to_dict() for a in done.accepted]},
        status=200 if done.all_duplicates else 202,
    )


async def get_event(request: Request) -> Response:
    queries = services(request).get(Queries)
    viewer = queries.viewer(caller(request))
    source = request.query_params.get("source")
    return json_response(await queries.events.get(viewer, request.path_params["id"], source))


def routes() -> list[Route]:
    return [
        Route("/v1/events", post_events, methods=["POST"]),
        # Before the catch-all below (an event id may hold slashes).
        Route("/v1/events/{id:path}/routes", delivery_log_routes.event_routes, methods=["GET"]),
        Route("/v1/events/{id:path}", get_event, methods=["GET"]),
    ]


# One stored event in an answer (``Accepted.to_dict``); the adapters' answers extend it.
ACCEPTED_EVENT: dict[str, Any] = {
    "id": {"type": "string"},
    "source": {"type": "string"},
    "sequence": {"type": "integer"},
    "incident": {"type": "string"},
    "duplicate": {"type": "boolean"},
}
ACCEPTED = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["structured", "binary", "batch"]},
        "accepted": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "source", "sequence"],
                "properties": ACCEPTED_EVENT,
            },
        },
    },
}
CE_REF = {"$ref": "#/components/schemas/CloudEvent"}
# Binary mode: the attributes travel as ce- headers (percent-encoded), the body is the data, and
# Content-Type is its datacontenttype. Any other attribute may come as ce-<name> too. In
# structured and batched mode ce- headers are ignored, so the document cannot require them;
# their values follow the CloudEventEnvelope schema once decoded.
BINARY_HEADERS = [
    {
        "name": f"ce-{name}",
        "in": "header",
        "required": False,
        "description": f"binary mode: the {name} attribute (required there)",
        "schema": {"type": "string"},
    }
    for name in ("specversion", "id", "source", "type")
]


# W3C Trace Context (the CloudEvents distributed-tracing extension): kept with the events
# that carry no valid traceparent attribute of their own; an invalid one is ignored.
TRACE_HEADERS = [
    {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": "W3C Trace Context: kept with each event that has no valid traceparent"
        " attribute of its own, and continued by its deliveries; an invalid one is ignored",
        "schema": {"type": "string"},
    },
    {
        "name": "tracestate",
        "in": "header",
        "required": False,
        "description": "W3C Trace Context: kept with the traceparent it goes with",
        "schema": {"type": "string"},
    },
]


def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/events": {
            "post": {
                "summary": "Publish CloudEvents (structured, binary or batched mode)",
                "description": "The mode is chosen from Content-Type. In binary mode the "
                "attributes travel as percent-encoded ce- headers and the body is the data.",
                "security": BEARER,
                "parameters": BINARY_HEADERS + TRACE_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        STRUCTURED: {"schema": CE_REF},
                        BATCH: {"schema": {"type": "array", "items": CE_REF}},
                        "application/json": {
                            "schema": {"description": "binary mode: the event's data"}
                        },
                    },
                },
                "responses": {
                    "202": json_body(ACCEPTED, "Accepted and stored"),
                    "200": json_body(ACCEPTED, "Every event was a duplicate; stored once"),
                    **errors(400, 401, 403, 409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/events/{id}": {
            "get": {
                "summary": "Read a stored event back by its CloudEvents id",
                "security": BEARER,
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "source", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": json_body({"type": "object"}, "The event with its sequence"),
                    **errors(400, 401, 404, 503),
                },
            }
        },
    }
