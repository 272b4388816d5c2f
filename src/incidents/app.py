"""The ASGI application: ``create_app(settings)`` wires routes, error rendering and clients."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol

from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from incidents import health, metrics
from incidents.api import (
    adapter_routes,
    alert_routes,
    delivery_routes,
    incident_routes,
    ingest_routes,
    principal_routes,
    silence_routes,
    stream_routes,
    sync_routes,
)
from incidents.api.toolkit import openapi_document
from incidents.api.toolkit.app_services import AdapterSchemas, Services, by_class, services
from incidents.api.toolkit.authentication import Authenticator, BearerTokens
from incidents.api.toolkit.request_limits import RequestLimits
from incidents.api.toolkit.responses import problem_response
from incidents.api.toolkit.session_cookies import EndedSessions
from incidents.console import console_routes
from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import (
    IncidentsError,
    MethodNotAllowed,
    NotFound,
    RedisFull,
    StoreUnavailable,
)
from incidents.gc_freeze import freeze_startup_objects
from incidents.ingest.pipeline import Ingestor
from incidents.model.schemas import ADAPTERS_DIR, SchemaRegistry
from incidents.policy.admission import PolicyAdmission
from incidents.policy.files import load_policy_files
from incidents.policy.principals import PrincipalStore
from incidents.queries.query_set import Queries
from incidents.settings import Settings, SettingsError
from incidents.silences.store import SilenceStore
from incidents.store.events import EventStore
from incidents.store.redis import connect_async, full, is_full
from incidents.tracing.middleware import TraceMiddleware
from incidents.tracing.spans import NoSpans, Spans
from incidents.usecases.delivery_actions import DeliveryActions
from incidents.usecases.event_submission import EventSubmission
from incidents.usecases.incident_commands import IncidentCommands
from incidents.usecases.silence_actions import SilenceActions
from incidents.usecases.subscription_actions import SubscriptionActions
from incidents.write_planner import WritePlanner

log = logging.getLogger("incidents")
# What the access counts show for a request whose client left before it was answered (the
# status nginx logs for it); the client never sees it.
CLIENT_CLOSED_REQUEST = 499


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _incidents_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IncidentsError)
    if isinstance(exc, RedisFull):
        request.app.state.metrics.redis_full_refusals += 1
    if isinstance(exc, StoreUnavailable):
        request.app.state.metrics.redis_errors += 1
    return problem_response(exc.to_problem(request.url.path), exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    mapped: IncidentsError
    if exc.status_code == 404:
        mapped = NotFound(f"no route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        allowed = allowed_methods(request.app.routes, request.scope)
        mapped = MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
        return problem_response(mapped.to_problem(request.url.path), 405, mapped.headers)
    else:
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code}
        return problem_response(body, exc.status_code, exc.headers)
    return problem_response(mapped.to_problem(request.url.path), mapped.status, exc.headers)


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves on this path (Starlette's own 405 names only the
    methods of the first route whose path matches)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def _redis_error(request: Request, exc: Exception) -> Response:
    """A write refused because Redis is full, wherever it was made, is a 503 like any other
    (``store.redis.guarded`` converts those it wraps; this catches any it does not). Any
    other Redis error reply is unexpected."""
    if is_full(exc):
        return await _incidents_error(request, full(f"{request.method} {request.url.path}", exc))
    return await _unexpected(request, exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that went away while its body was being read: nothing to answer, nothing
    for an operator to do (the internet does this), so one info line and a count."""
    request.app.state.metrics.client_disconnects += 1
    log.info("client disconnected while sending %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    error = IncidentsError("an unexpected error occurred; it has been logged")
    return problem_response(error.to_problem(request.url.path), 500)


class RouteModule(Protocol):
    def routes(self) -> list[Route]: ...

    def openapi_paths(self) -> Mapping[str, object]: ...


def route_modules() -> list[RouteModule]:
    """Every module that serves HTTP endpoints; each describes its own OpenAPI paths."""
    return [
        health,
        openapi_document,
        metrics,
        ingest_routes,
        incident_routes,
        alert_routes,
        adapter_routes,
        principal_routes,
        delivery_routes,
        silence_routes,
        sync_routes,
        console_routes,
        stream_routes,
    ]


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    server_process: bool = False,
    spans: Spans | None = None,
) -> Starlette:
    """The API app. ``server_process``: this process runs only the app (``serve``), so its
    start-up objects are frozen out of garbage collection once it is ready. ``spans``: where
    spans go (``tracing.span_export.spans_from_environ``); none are recorded when not given."""
    if settings.redis_url is None:
        raise SettingsError(
            "INCIDENTS_REDIS_URL is not set: point it at Redis, or use `incidents dev`, "
            "which starts an embedded one"
        )
    redis_url = settings.redis_url
    registry = SchemaRegistry.load(settings.schemas_dir)
    loaded = load_policy_files(settings.policies_dir, settings.schemas_dir)  # bad file: no start
    policy, rules = loaded.policy, loaded.alerts
    modules = route_modules()
    sources = [m.openapi_paths for m in modules]
    recorder: Spans = spans if spans is not None else NoSpans()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        recorder.open()
        redis = connect_async(redis_url)
        queue_url = settings.queue_redis_url
        queue_redis = redis if queue_url is None else connect_async(queue_url)
        store = EventStore(
            redis, settings.min_replicas, settings.replica_timeout_ms, settings.layout
        )
        principals = PrincipalStore(redis)
        ingestor = Ingestor(
            registry,
            store,
            clock,
            admission=PolicyAdmission(policy),
            planners=[WritePlanner(store, rules)],
            spans=recorder,
        )
        submission = EventSubmission(ingestor)
        queries = Queries.build(redis, store, registry)
        deliveries = DeliveryQueries(redis, settings.layout)
        silences = SilenceStore(redis)
        app.state.services = Services(
            settings=settings,
            redis=redis,
            registry=registry,
            store=store,
            auth=Authenticator(settings.admin_token, principals.lookup, ended=EndedSessions(redis)),
            clock=clock,
            adapter_schemas=AdapterSchemas(settings.schemas_dir / ADAPTERS_DIR),
            queue_redis=queue_redis,
            components=by_class(
                ingestor,
                principals,
                rules,
                queries,
                deliveries,
                openapi_document.OpenAPIDocument(registry.raw, sources, settings.schemas_dir),
                # what a user does, which every door calls (incidents.usecases)
                SilenceActions(silences, deliveries, queries, clock, settings.max_silences),
                SubscriptionActions(settings, deliveries, queries, clock),
                DeliveryActions(redis, deliveries, queries, registry, silences, clock),
                submission,
                IncidentCommands(submission),
            ),
        )
        if server_process:
            freeze_startup_objects()
        try:
            yield
        finally:
            hub = getattr(app.state, "stream_hub", None)
            if hub is not None:
                await hub.close()  # ends every open stream (": closing") and stops its reader
            await redis.aclose()
            if queue_redis is not redis:
                await queue_redis.aclose()
            recorder.close()

    # Events first: the router tries routes in order, and nearly every request is one.
    all_routes = [
        r for m in sorted(modules, key=lambda m: m is not ingest_routes) for r in m.routes()
    ]
    counters = metrics.Metrics()
    app = Starlette(
        routes=all_routes,
        middleware=[
            Middleware(TraceMiddleware, spans=recorder),
            Middleware(metrics.MetricsMiddleware, metrics=counters, routes=all_routes),
            Middleware(
                RequestLimits,
                max_header_bytes=settings.max_header_bytes,
                body_timeout=settings.body_timeout,
            ),
            # request.user: the Principal, or Anonymous holding why not (see
            # incidents.api.toolkit.authentication)
            Middleware(AuthenticationMiddleware, backend=BearerTokens(lambda c: services(c).auth)),
        ],
        lifespan=lifespan,
        exception_handlers={
            IncidentsError: _incidents_error,
            HTTPException: _http_error,
            ResponseError: _redis_error,
            ClientDisconnect: _client_gone,
            Exception: _unexpected,
        },
    )
    app.state.metrics = counters
    return app
