"""Delivery channels: the CloudEvents channel renders signed requests and classifies responses;
the dispatcher drives any channel, multi-step ones included, and keeps each (subscription,
incident)'s channel state with the lane's progress."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import redis
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from incidents.connectors.channel_base import (
    ChannelState,
    Message,
    Outcome,
    OutcomeKind,
    Request,
    Response,
)
from incidents.delivery.attempt_log import iso
from incidents.delivery.channels.cloudevents import CloudEventsChannel
from incidents.errors import FieldError
from incidents.model.cloudevent import CloudEvent
from incidents.settings import Settings
from incidents.store import keys
from incidents.subscriptions.spec import DeliveryMode, Spec
from incidents.subscriptions.subscription import new_subscription
from tests.connector_support import deliver_once, kept_state
from tests.delivery_support import publish
from tests.support import as_token, create_principal, event, serve_in_thread

T0 = 1_800_000_000.0
EVENT = CloudEvent.from_dict(
    {"specversion": "1.0", "id": "e-1", "source": "/mon", "type": "im.incident.note",
     "imincidentid": "INC-7", "data": {"text": "disk full"}}
)  # fmt: skip


def message(mode: DeliveryMode = DeliveryMode.STRUCTURED) -> Message:
    spec = Spec(sink="https://example.com/hook", headers={"X-Team": "ops"}, mode=mode)
    sub = new_subscription(spec, "admin", datetime.fromtimestamp(T0, UTC))
    return Message("msg_1_abc", sub, EVENT, "INC-7", None, T0)


def response(status: int, **headers: str) -> Response:
    return Response(status, headers, b"body", 12.5)


def test_cloudevents_channel_renders_a_signed_post_in_either_mode() -> None:
    """Structured mode POSTs the event as JSON, binary mode as ce- headers and data; both carry
    the subscription's headers and a Standard Webhooks signature made at the clock's time."""
    structured = message()
    request = CloudEventsChannel().render(structured)
    assert (request.method, request.url) == ("POST", "https://example.com/hook")
    assert request.headers["content-type"].startswith("application/cloudevents+json")
    assert orjson.loads(request.body)["id"] == "e-1"
    assert request.headers["X-Team"] == "ops"
    assert request.headers["webhook-timestamp"] == str(int(T0))
    from svix.webhooks import Webhook  # here: importing svix takes a quarter second

    secret = structured.subscription.secrets[0].value
    signed = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    when = datetime.fromtimestamp(T0, UTC)
    assert signed["webhook-signature"] == Webhook(secret).sign(
        "msg_1_abc", when, request.body.decode()
    )
    assert signed["webhook-id"] == "msg_1_abc"

    binary = CloudEventsChannel().render(message(DeliveryMode.BINARY))
    assert binary.headers["ce-id"] == "e-1" and binary.headers["ce-imincidentid"] == "INC-7"
    assert orjson.loads(binary.body) == {"text": "disk full"}


def test_cloudevents_channel_classifies_responses_per_the_webhook_spec() -> None:
    """2xx is delivered, 410 gone, 429/503 failed with the Retry-After asked, and a redirect is
    a failure that says redirects are not followed."""
    channel, sent = CloudEventsChannel(), message()
    request = channel.render(sent)
    assert channel.classify(sent, request, response(204)).kind == OutcomeKind.DELIVERED
    assert channel.classify(sent, request, response(410)).kind == OutcomeKind.GONE
    busy = channel.classify(sent, request, response(429, **{"retry-after": "30"}))
    assert (busy.kind, busy.retry_after) == (OutcomeKind.FAILED, 30.0)
    moved = channel.classify(sent, request, response(302))
    assert moved.kind == OutcomeKind.FAILED and "redirects are not followed" in moved.error


def test_cloudevents_channel_refuses_headers_it_sets_itself() -> None:
    """Validation at registration names each header the channel owns (webhook-*, ce-*, ...)."""
    spec = Spec(
        sink="https://example.com", headers={"Webhook-Id": "x", "ce-type": "y", "X-Ok": "z"}
    )
    problems = CloudEventsChannel().validate(spec)
    assert [p.pointer for p in problems if isinstance(p, FieldError)] == [
        "/protocolsettings/headers/Webhook-Id",
        "/protocolsettings/headers/ce-type",
    ]


@dataclass
class Tracker:
    """A ticketing system: records are created, then moved through looked-up transitions."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def create(request: HttpRequest) -> HttpResponse:
            self.calls.append(("POST", request.url.path, await request.json()))
            return JSONResponse({"id": f"REC-{len(self.calls)}"}, status_code=201)

        async def transitions(request: HttpRequest) -> HttpResponse:
            self.calls.append(("GET", request.url.path, None))
            return JSONResponse({"transitions": [{"id": "31", "name": "Comment"}]})

        async def update(request: HttpRequest) -> HttpResponse:
            self.calls.append(("PATCH", request.url.path, await request.json()))
            return HttpResponse(status_code=204)

        return Starlette(
            routes=[
                Route("/records", create, methods=["POST"]),
                Route("/records/{id}/transitions", transitions, methods=["GET"]),
                Route("/records/{id}", update, methods=["PATCH"]),
            ]
        )


class TrackerChannel:
    """Creates a record for a new incident, then, for later events, looks up the transition
    (a preliminary GET) and PATCHes the record it created."""

    name = "cloudevents"
    needs_incident = False

    def validate(self, spec: Spec) -> list[FieldError]:
        return []

    def render(self, message: Message) -> Request:
        base = message.subscription.spec.sink
        if message.state is None or message.state.external_id is None:
            body = orjson.dumps({"title": message.event.type, "incident": message.incident})
            return Request("POST", f"{base}/records", {"content-type": "application/json"}, body)
        record = message.state.external_id
        return Request("GET", f"{base}/records/{record}/transitions", {}, step="lookup")

    def classify(self, message: Message, request: Request, response: Response) -> Outcome | Request:
        if response.status >= 300:
            return Outcome(OutcomeKind.FAILED, response.status, error=f"HTTP {response.status}")
        if request.step == "lookup":
            assert message.state is not None and message.state.external_id is not None
            transition = orjson.loads(response.body)["transitions"][0]["id"]
            body = orjson.dumps({"transition": transition, "note": message.event.id})
            url = f"{message.subscription.spec.sink}/records/{message.state.external_id}"
            headers = {"content-type": "application/json"}
            return Request("PATCH", url, headers, body, step="update")
        if request.method == "POST":
            created = ChannelState(orjson.loads(response.body)["id"], {"created": iso(message.now)})
            return Outcome(OutcomeKind.DELIVERED, response.status, state=created)
        return Outcome(OutcomeKind.DELIVERED, response.status)


class IncidentChannel:
    """Renders from the incident as well as the event, keeping each incident view it is given."""

    name = "cloudevents"
    needs_incident = True

    def __init__(self) -> None:
        self.views: list[Mapping[str, object] | None] = []

    def validate(self, spec: Spec) -> list[FieldError]:
        return []

    def render(self, message: Message) -> Request:
        self.views.append(message.incident_view)
        body = orjson.dumps({"incident": message.incident_view, "event": message.event.id})
        url = f"{message.subscription.spec.sink}/records"
        return Request("POST", url, {"content-type": "application/json"}, body)

    def classify(self, message: Message, request: Request, response: Response) -> Outcome:
        return Outcome(OutcomeKind.DELIVERED, response.status)


def test_a_create_then_update_channel_keeps_its_record_id_per_incident(
    settings: Settings, client: httpx.Client, redis_client: redis.Redis
) -> None:
    """The dispatcher drives a channel that creates a record, keeps its id as the incident's
    channel state (saved with the lane), and later looks up a transition and PATCHes that
    record; the attempt log carries the injected clock's time."""
    tracker, channel = Tracker(), TrackerChannel()
    with serve_in_thread(tracker.app()) as url:
        created = client.post("/v1/subscriptions", json={"sink": url})
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        declared = publish(client, event("im.incident.declare"))[0]
        incident = declared["incident"]
        assert deliver_once(settings, channel, lambda: T0) == 1
        assert [c[:2] for c in tracker.calls] == [("POST", "/records")]
        state = kept_state(settings.redis_url or "", sub_id, incident)
        assert state == ChannelState("REC-1", {"created": iso(T0)})

        note = event("im.incident.note", imincidentid=incident)
        publish(client, note, event("im.incident.note", imincidentid=incident))
        assert deliver_once(settings, channel, lambda: T0) == 2
    assert [c[:2] for c in tracker.calls[1:]] == [
        ("GET", "/records/REC-1/transitions"),
        ("PATCH", "/records/REC-1"),
    ] * 2
    assert tracker.calls[2][2] == {"transition": "31", "note": note["id"]}
    assert kept_state(settings.redis_url or "", sub_id, incident) == state  # unchanged by updates
    log = client.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["attempts"]
    assert [a["outcome"] for a in log] == ["delivered"] * 3
    assert {a["time"] for a in log} == {iso(T0)}

    assert client.delete(f"/v1/subscriptions/{sub_id}").status_code == 204
    assert not redis_client.exists(keys.channel_state(sub_id))  # gone with the subscription


def test_a_channel_that_needs_the_incident_gets_it_as_the_owner_may_read_it(
    settings: Settings, client: httpx.Client
) -> None:
    """A channel declaring needs_incident is given the incident as its subscription's owner
    reads it through the API: a field above the owner's clearance is left out and listed in
    ``redacted``; the CloudEvents channel does not ask for it."""
    assert CloudEventsChannel.needs_incident is False
    producer = create_principal(client, name="producer", tenant="acme", clearance="restricted")
    owner = create_principal(
        client, name="ops", roles=["subscriber"], tenant="acme", clearance="internal"
    )
    tracker, channel = Tracker(), IncidentChannel()
    data = {"title": "Card payments failing", "severity": "SEV1", "service": "payments",
            "summary": "3% of card payments fail at the acquirer"}  # fmt: skip
    with serve_in_thread(tracker.app()) as url, as_token(client, owner["token"]) as mine:
        created = mine.post("/v1/subscriptions", json={"sink": url})
        assert created.status_code == 201, created.text
        with as_token(client, producer["token"]) as source:
            declared = publish(source, event("im.incident.declare", data, imdataclass="internal"))
        incident = declared[0]["incident"]
        assert deliver_once(settings, channel, lambda: T0) == 1
        read = mine.get(f"/v1/incidents/{incident}")
        assert read.status_code == 200, read.text
    [view] = channel.views
    assert view is not None and view == read.json()
    assert view["id"] == incident and view["title"] == "Card payments failing"
    assert "summary" not in view and view["redacted"] == ["/summary"]
    assert tracker.calls[0][2]["incident"] == view
