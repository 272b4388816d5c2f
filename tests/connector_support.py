"""Real parts for the connector tests: a vendor played by a real HTTP server that records what
it is sent and answers from a script, the real Dispatcher driven on a fake clock that jumps to
the next due lane (so retries and Retry-After waits cost no real time), a subscription of a
given format, and the vendors' published schemas (tests/contracts/) to validate bodies with."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jsonschema
import orjson
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.connectors.channel_base import Channel, ChannelState, Message
from incidents.connectors.channel_base import Response as ChannelResponse
from incidents.delivery.channel_state import ChannelStateStore
from incidents.model.cloudevent import CloudEvent
from incidents.model.schemas import SchemaRegistry
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.redis import connect_async
from incidents.subscriptions.spec import Spec
from incidents.subscriptions.subscription import new_subscription
from incidents.worker.jobs import WorkerContext
from tests.delivery_support import FakeClock
from tests.support import serve_in_thread, with_async_redis

CONTRACTS = Path(__file__).resolve().parent / "contracts"
Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Sent:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Vendor:
    """Answers each path from its script (then ``default``), recording every request."""

    default: Reply
    url: str = ""
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        with self.lock:
            self.sent.append(Sent(request.url.path, dict(request.headers), body))
            script = self.scripts.get(request.url.path)
            status, headers, reply = script.pop(0) if script else self.default
        return Response(reply, status, headers)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [s.body for s in self.sent]


@contextmanager
def vendor(default: Reply) -> Iterator[Vendor]:
    found = Vendor(default)
    app = Starlette(routes=[Route("/{path:path}", found.handle, methods=["POST"])])
    with serve_in_thread(app) as url:
        found.url = url
        yield found


def register(client: httpx.Client, body: dict[str, Any]) -> str:
    """Register a subscription (incident events unless ``body`` says otherwise); its id."""
    created = client.post("/v1/subscriptions", json={"types": ["im.incident.*"], **body})
    assert created.status_code == 201, created.text
    sub_id: str = created.json()["id"]
    return sub_id


def subscribe_format(
    client: httpx.Client,
    redis_client: redis.Redis,
    sink: str,
    format_: str,
    formatsettings: dict[str, Any],
    types: list[str],
) -> str:
    """Register ``sink`` and store its channel and settings with it (as registration will once
    it takes ``format``); the subscription's id."""
    created = client.post("/v1/subscriptions", json={"sink": sink, "types": types})
    assert created.status_code == 201, created.text
    sub_id: str = created.json()["id"]
    spec = json.loads(redis_client.hget(keys.subscription(sub_id), "spec") or b"{}")
    spec.update(format=format_, formatsettings=formatsettings)
    redis_client.hset(keys.subscription(sub_id), "spec", json.dumps(spec))
    return sub_id


def drive(
    settings: Settings,
    channel: Channel,
    clock: FakeClock,
    done: Callable[[], bool],
    timeout: float = 30.0,
) -> None:
    """Run the real Dispatcher with ``channel`` until ``done()``; whenever nothing is due, the
    clock jumps to the next lane due (a retry, a Retry-After)."""

    async def run() -> None:
        assert settings.redis_url is not None
        connection = connect_async(settings.redis_url)
        session = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        context = _worker_context(settings, channel, clock)
        try:
            while not done():
                await context.dispatcher(connection, session).run(1.0)
                if done():
                    return
                if time.monotonic() > deadline:
                    raise AssertionError("the vendor did not get what was expected in time")
                first = await connection.zrange(keys.LANES_DUE, 0, 0, withscores=True)
                due = float(first[0][1]) if first else 0.0
                if due > clock.now:
                    clock.now = due
                else:
                    await asyncio.sleep(0.02)
        finally:
            await session.close()
            await connection.aclose()

    asyncio.run(run())


def contract(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((CONTRACTS / name).read_text())
    return found


def openapi_request_validator(name: str, path: str) -> jsonschema.protocols.Validator:
    """A validator for the JSON request body of ``POST path`` in an OpenAPI document."""
    document = contract(name)
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    root = {**schema["schema"], "components": document["components"]}
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return jsonschema.Draft7Validator(root, format_checker=checker)


def adaptive_card_validator() -> jsonschema.protocols.Validator:
    schema = contract("adaptive-card-1.5.schema.json")
    return jsonschema.Draft6Validator(schema)


def _worker_context(
    settings: Settings, channel: Channel, clock: Callable[[], float]
) -> WorkerContext:
    """A worker's context offering ``channel`` under its name (the subscriptions' format): its
    router and its real Dispatcher are built as a worker builds them."""
    registry = SchemaRegistry.load(settings.schemas_dir)
    return WorkerContext(settings, registry, channels={channel.name: channel}, clock=clock)


def deliver_once(settings: Settings, channel: Channel, clock: Callable[[], float]) -> int:
    """Route the outbox, then work every due lane once through the real Dispatcher offering
    ``channel``; how many attempts were made."""

    async def run() -> int:
        assert settings.redis_url is not None
        connection = connect_async(settings.redis_url)
        session = aiohttp.ClientSession()
        context = _worker_context(settings, channel, clock)
        try:
            await context.router(connection).route()
            return await context.dispatcher(connection, session).run(5.0)
        finally:
            await session.close()
            await connection.aclose()

    return asyncio.run(run())


def kept_state(redis_url: str, sub_id: str, incident: str) -> ChannelState | None:
    """The channel state kept for (subscription, incident), read from Redis."""
    return with_async_redis(redis_url, lambda c: ChannelStateStore(c).get(sub_id, incident))


def ticket_message(
    format_: str,
    sink: str,
    type_: str,
    data: dict[str, Any],
    state: ChannelState | None,
    settings: Mapping[str, object],
    view: Mapping[str, object] | None,
    now: float,
) -> Message:
    """A message to a ticketing connector: one incident event of ``type_`` for INC-7."""
    spec = Spec(sink=sink, types=("im.incident.*",), format=format_, formatsettings=settings)
    sub = new_subscription(spec, "admin", datetime.fromtimestamp(now, UTC))
    raw = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/t",
        "type": type_,
        "imincidentid": "INC-7",
        "data": data,
    }
    return Message("d-1", sub, CloudEvent.from_dict(raw), "INC-7", state, now, view)


def reply(status: int, payload: object = None, **headers: str) -> ChannelResponse:
    """A vendor's answer to a rendered request: ``payload`` as JSON (no body when None)."""
    raw = orjson.dumps(payload) if payload is not None else b""
    return ChannelResponse(status, headers, raw, 4.0)
