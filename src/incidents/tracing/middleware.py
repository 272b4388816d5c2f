"""The HTTP side of tracing: each request's W3C trace context is read from its headers and
made the context its events are kept with (``context.incoming``); when spans are recorded,
each request is a server span under it (``{method} {route}``, with the ``http.*``
attributes of the semantic conventions), and an event that came with no trace context of
its own is kept with the server span's, so its routing and deliveries join that trace."""

from __future__ import annotations

from collections.abc import MutableMapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incidents.logs import log_ids
from incidents.tracing.context import from_headers, incoming
from incidents.tracing.spans import Spans


class TraceMiddleware:
    def __init__(self, app: ASGIApp, spans: Spans) -> None:
        self.app = app
        self.spans = spans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = from_headers(scope["headers"])
        if not self.spans.enabled:
            token = incoming.set(found)
            try:
                if found is None:
                    await self.app(scope, receive, send)
                else:
                    with log_ids(trace_id=found.trace_id):
                        await self.app(scope, receive, send)
            finally:
                incoming.reset(token)
            return
        method = scope["method"]
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        status: MutableMapping[str, int] = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        with self.spans.start(method, parent=found, kind="server", attributes=attributes) as span:
            kept = found or span.context
            token = incoming.set(kept)
            try:
                with log_ids(trace_id=kept.trace_id if kept is not None else None):
                    await self.app(scope, receive, send_status)
            finally:
                incoming.reset(token)
                route = scope.get("route")
                template = getattr(route, "path", None)
                if isinstance(template, str):
                    span.set("http.route", template)
                    span.rename(f"{method} {template}")
                span.set("http.response.status_code", status["code"])
                if status["code"] >= 500:
                    span.fail(f"HTTP {status['code']}")
