"""``POST /v1/ingest/alertmanager``, ``POST /v1/ingest/grafana`` and ``POST /v2/enqueue``.

Alertmanager retries 5xx and gives up on 4xx, so a bad payload is a 4xx and the answer is a
2xx only once every event is stored. ``/v2/enqueue`` answers in PagerDuty's own shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.adapter_submit import adapter_schema, submit
from incidents.api.ingest_routes import ACCEPTED_EVENT
from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import BEARER, adapter_schema_ref, errors, json_body
from incidents.api.toolkit.request_body import LARGE_BODY, read_body, read_json
from incidents.api.toolkit.responses import json_response
from incidents.connectors.alertmanager import adapter as alertmanager_adapter
from incidents.connectors.grafana import adapter as grafana_adapter
from incidents.connectors.inbound_events import check_input
from incidents.connectors.pagerduty import adapter as pagerduty_adapter
from incidents.errors import MAX_LISTED_ERRORS, IncidentsError
from incidents.ingest.modes import check_count
from incidents.model.bounded_json import parse_json
from incidents.model.principal import PRODUCER
from incidents.model.schemas import errors_of
from incidents.off_loop import off_loop
from incidents.policy.alert_rules import AlertRules

# An alert's schema check takes about 0.1 ms: more than this many go to a worker thread.
INLINE_ALERTS = 16


def _answer(results: list[dict[str, Any]]) -> Response:
    status = 200 if results and all(r.get("duplicate") for r in results) else 202
    return json_response({"accepted": results}, status=status)


def _count_alerts(payload: Any, limit: int, what: str) -> int:
    """How many alerts a notification carries (each becomes an event); more than the batch
    limit is refused before any of them is looked at."""
    alerts = payload.get("alerts") if isinstance(payload, Mapping) else None
    count = len(alerts) if isinstance(alerts, list) else 0
    check_count(count, limit, what)
    return count


async def post_alertmanager(request: Request) -> Response:
    svc = services(request)
    principal = caller(request)
    principal.require(PRODUCER)
    payload = await read_json(request, svc.settings, "the Alertmanager payload")
    count = _count_alerts(payload, svc.settings.max_batch_events, "an Alertmanager notification")
    await off_loop(
        count > INLINE_ALERTS,
        check_input,
        adapter_schema(svc, "alertmanager"),
        payload,
        "Alertmanager webhook",
    )
    events = alertmanager_adapter.to_events(payload, svc.get(AlertRules))
    return _answer(await submit(svc, principal, events))


async def post_grafana(request: Request) -> Response:
    svc = services(request)
    principal = caller(request)
    principal.require(PRODUCER)
    settings = svc.settings
    body = await read_body(request, settings.max_body_bytes)
    rules = svc.get(AlertRules)
    signing = rules.grafana_signing.get(principal.name) or rules.grafana_signing.get(principal.id)
    if signing is not None:
        grafana_adapter.verify_signature(signing, request.headers, body, datetime.now(UTC))
    payload = await off_loop(
        len(body) > LARGE_BODY,
        parse_json,
        body,
        "the Grafana payload",
        max_depth=settings.max_json_depth,
    )
    count = _count_alerts(payload, settings.max_batch_events, "a Grafana notification")
    await off_loop(
        count > INLINE_ALERTS,
        check_input,
        adapter_schema(svc, "grafana"),
        payload,
        "Grafana webhook",
    )
    return _answer(await submit(svc, principal, grafana_adapter.to_events(payload, rules)))


def _pagerduty_error(status: int, message: str, details: list[str], **headers: str) -> Response:
    body = {"status": "invalid event", "message": message, "errors": details[:MAX_LISTED_ERRORS]}
    return json_response(body, status=status, headers=headers)


async def post_enqueue(request: Request) -> Response:
    svc = services(request)
    try:
        limit = min(pagerduty_adapter.MAX_BYTES, svc.settings.max_body_bytes)
        body = await read_json(request, svc.settings, limit=limit)
        problems = errors_of(adapter_schema(svc, "pagerduty"), body)
        if problems:
            return _pagerduty_error(
                400,
                "Event object is invalid",
                [f"{p.pointer or '/'}: {p.detail}" for p in problems],
            )
        assert isinstance(body, Mapping)  # the schema says it is an object
        principal = await svc.auth.resolve(str(body["routing_key"]))
        principal.require(PRODUCER)
        event, dedup_key = pagerduty_adapter.to_event(body)
        result = (await submit(svc, principal, [event]))[0]
    except IncidentsError as exc:
        details = [exc.detail, *(f"{e.pointer}: {e.detail}" for e in exc.errors)]
        return _pagerduty_error(exc.status, exc.title, details, **exc.headers)
    answer: dict[str, Any] = {
        "status": "success",
        "message": "Event processed",
        "dedup_key": dedup_key,
    }
    alert = result.get("alert") or {}
    if alert.get("outcome"):
        answer["outcome"] = alert["outcome"]
    if alert.get("reason"):
        answer["detail"] = alert["reason"]
    if result.get("incident"):
        answer["incident"] = result["incident"]
    return json_response(answer, status=202)


def routes() -> list[Route]:
    return [
        Route("/v1/ingest/alertmanager", post_alertmanager, methods=["POST"]),
        Route("/v1/ingest/grafana", post_grafana, methods=["POST"]),
        Route("/v2/enqueue", post_enqueue, methods=["POST"]),
    ]


ACCEPTED = {
    "type": "object",
    "properties": {
        "accepted": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    **ACCEPTED_EVENT,
                    "alert": {
                        "type": "object",
                        "properties": {
                            "key": {"type": "string"},
                            "outcome": {
                                "enum": [
                                    "opened",
                                    "deduplicated",
                                    "escalated",
                                    "deescalated",
                                    "acknowledged",
                                    "unchanged",
                                    "resolved",
                                    "ignored",
                                ]
                            },
                            "reason": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}
PAGERDUTY_ERROR = {
    "type": "object",
    "properties": {
        "status": {"const": "invalid event"},
        "message": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
}


def _schema(name: str) -> dict[str, Any]:
    return {**adapter_schema_ref(name), "description": f"schemas/adapters/{name}.json"}


def _webhook(tool: str, schema: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"{tool} webhook -> im.alert.* events",
            "security": BEARER,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _schema(schema)}},
            },
            "responses": {
                "202": json_body(ACCEPTED, "Stored"),
                "200": json_body(ACCEPTED, "Every event was a repeat; stored once"),
                **errors(400, 401, 403, 409, 413, 422, 503),
            },
        }
    }


def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/ingest/alertmanager": _webhook("Prometheus Alertmanager (version 4)", "alertmanager"),
        "/v1/ingest/grafana": _webhook("Grafana Alerting (version 1)", "grafana"),
        "/v2/enqueue": {
            "post": {
                "summary": "PagerDuty Events API v2 compatible; routing_key is a producer token",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _schema("pagerduty")}},
                },
                "responses": {
                    "202": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"const": "success"},
                                "message": {"const": "Event processed"},
                                "dedup_key": {"type": "string"},
                            },
                        },
                        "Processed",
                    ),
                    **{
                        str(code): json_body(PAGERDUTY_ERROR, text)
                        for code, text in (
                            (400, "Invalid event"),
                            (401, "routing_key is not a valid token"),
                            (403, "Denied by policy"),
                            (413, "Larger than 512 KB"),
                            (503, "Redis unavailable; retry"),
                        )
                    },
                },
            }
        },
    }
