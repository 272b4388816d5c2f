"""``GET /v1/stream``: Server-Sent Events of the events the caller may see, redacted for it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.authentication import caller
from incidents.api.toolkit.openapi_document import BEARER, errors, query_param
from incidents.errors import FieldError, InvalidRequest
from incidents.model.cloudevent import StoredEvent
from incidents.queries.query_set import Queries
from incidents.store.keys import Partitions
from incidents.store.redis import connect_async
from incidents.stream.hub import StreamHub, StreamOptions
from incidents.stream.marks import Mark
from incidents.stream.selection import Selection
from incidents.stream.session import (
    CONTENT_TYPE,
    MISSED,
    EventStreamResponse,
    StreamSession,
    resume_plan,
)


def hub_of(request: Request) -> StreamHub:
    """The app's hub, made on first use (``app.state.stream_options`` may tune it)."""
    state = request.app.state
    found = services(request)
    hub: StreamHub | None = getattr(state, "stream_hub", None)
    if hub is None or hub.store is not found.store:  # none yet, or one of an earlier lifespan
        url = found.settings.redis_url
        assert url is not None  # create_app refuses to start without it
        options = getattr(state, "stream_options", None) or StreamOptions()
        hub = state.stream_hub = StreamHub(found.store, options, lambda: connect_async(url))
    return hub


# A message's id: a sequence, or with several partitions each partition's joined by dots.
LAST_EVENT_ID = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$"}


def last_event_id(request: Request, layout: Partitions) -> Mark | None:
    """``Last-Event-ID`` (or ``?last_event_id=`` for clients that cannot set headers): a
    sequence with one partition, a message's id as sent with several."""
    raw = request.headers.get("last-event-id")
    where = "/headers/Last-Event-ID"
    if raw is None:
        raw, where = request.query_params.get("last_event_id"), "/query/last_event_id"
    if raw is None:
        return None
    try:
        return Mark.parse(raw, layout.count)
    except ValueError as exc:
        detail = f"{raw[:40]!r} is {exc}"
        raise InvalidRequest(
            f"Last-Event-ID: {detail}", errors=[FieldError(where, detail)]
        ) from None


async def stream_route(request: Request) -> Response:
    principal = caller(request)
    selection = Selection.from_query(request.query_params)
    after = last_event_id(request, services(request).store.layout)
    viewer = services(request).get(Queries).viewer(principal)
    hub = hub_of(request)

    def wants(stored: StoredEvent) -> bool:
        return selection.matches(stored.event) and viewer.may_read(stored)

    subscriber = await hub.subscribe(wants)
    try:
        resume = await resume_plan(hub.store, after) if after is not None else None
    except BaseException:
        hub.unsubscribe(subscriber)
        raise
    return EventStreamResponse(StreamSession(hub, subscriber, viewer, selection, resume))


def routes() -> list[Route]:
    return [Route("/v1/stream", stream_route, methods=["GET"])]


def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/stream": {
            "get": {
                "summary": "Server-Sent Events of the events the caller may see",
                "description": (
                    "Each message: `id:` the gateway sequence (with several partitions, "
                    "`INCIDENTS_PARTITIONS`, an opaque position: each partition's last sequence "
                    "joined by dots), `event:` the type, `data:` the "
                    "structured CloudEvent, filtered and redacted exactly as a delivery to a "
                    "subscription of the caller's would be (`imredacted` lists removed fields; "
                    "events the caller may not see are not sent). `: heartbeat` every 15 s. "
                    "`Last-Event-ID` (or `last_event_id`) resumes after that id; when it "
                    f"is older than the retained stream, the first message is `event: {MISSED}` "
                    "whose `id` is where the stream resumes. A client that falls behind gets "
                    "`: fell behind` and the stream ends: reconnect with `Last-Event-ID`."
                ),
                "security": BEARER,
                "parameters": [
                    query_param(
                        "types",
                        {"type": "string"},
                        "comma-separated event types or prefixes ending in *",
                    ),
                    query_param("incident", {"type": "string"}, "only this incident's events"),
                    query_param(
                        "last_event_id",
                        LAST_EVENT_ID,
                        "as the Last-Event-ID header, for clients that cannot set headers",
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": LAST_EVENT_ID,
                        "description": "resume after this message id",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the event stream",
                        "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
                    },
                    **errors(400, 401, 503),
                },
            }
        }
    }
