"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents import __version__
from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.openapi_document import JSONObject, errors, json_body
from incidents.api.toolkit.responses import json_response
from incidents.errors import RedisFull
from incidents.store.redis import FULL_REASON, FULL_RETRY_AFTER, guarded
from incidents.store.redis_memory import refuses_writes_async


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: Request) -> Response:
    svc = services(request)
    async with guarded("checking readiness"):
        await svc.redis.ping()
        full = await refuses_writes_async(svc.redis)
    if full:  # reachable, but every event would be refused
        raise RedisFull(f"not ready: {FULL_REASON}", retry_after=FULL_RETRY_AFTER)
    return json_response({"status": "ready", "redis": "ok"})


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def openapi_paths() -> JSONObject:
    ok = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": json_body(ok)}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: Redis reachable and taking writes (503 "
                "store-unavailable or redis-full otherwise)",
                "responses": {"200": json_body(ok), **errors(503)},
            }
        },
    }
