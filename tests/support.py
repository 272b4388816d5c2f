"""Real parts for tests: a uvicorn server in a thread (and one shared by a whole session),
event builders, clients for the gateway (principals, posting events, problem checks), and
waiting for a condition."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
import redis.asyncio as aioredis
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incidents.app import create_app
from incidents.settings import Settings
from incidents.store.embedded import EmbeddedRedis, free_port
from incidents.store.redis import connect_async

ADMIN_TOKEN = "test-admin-token-0123456789"
# The TLS context every test's httpx client is given: httpx otherwise builds one per client,
# loading the whole CA bundle (about 50 ms, as long as a short test), for clients that speak
# plain HTTP to 127.0.0.1. A context is made to be shared; nothing here changes it.
TEST_TLS = ssl.create_default_context()
T = TypeVar("T")


@contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None, grace: int = 5) -> Iterator[str]:
    """Run an ASGI app under uvicorn on 127.0.0.1 in a thread; yield its base URL. On the way
    out, requests still running get ``grace`` seconds to finish."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=grace,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def running_redis(
    folder: Path, appendonly: bool, options: Sequence[str] = ()
) -> Iterator[EmbeddedRedis]:
    """A redis-server of its own, its data in ``folder``, running until the block ends;
    ``options``: more redis-server flags."""
    server = EmbeddedRedis(folder, os.environ, appendonly=appendonly, options=options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def admin_client(url: str, timeout: float = 10) -> httpx.Client:
    """An admin client (the test admin token) of the gateway at ``url``."""
    return httpx.Client(
        verify=TEST_TLS,
        base_url=url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=timeout,
    )


@contextmanager
def admin_gateway(settings: Settings, timeout: float = 10) -> Iterator[httpx.Client]:
    """A gateway of its own on ``settings`` (a fresh app, served in a thread), and an admin
    client of it."""
    with (
        serve_in_thread(create_app(settings)) as url,
        admin_client(url, timeout=timeout) as client,
    ):
        yield client


def keys_holding(client: redis.Redis, needle: str) -> list[str]:
    """Every key of the Redis whose name or any value (of whatever type) contains
    ``needle``: where a secret that must never be stored in the clear would show up."""
    raw = needle.encode()
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values: list[Any] = [key]
        if kind == b"none":  # gone since the scan saw it
            continue
        if kind == b"string":
            values.append(client.get(key))
        elif kind == b"hash":
            values += [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"set":
            values += client.smembers(key)
        elif kind == b"zset":
            values += client.zrange(key, 0, -1)
        elif kind == b"stream":
            entries: Any = client.xrange(key)
            values += [part for _, fields in entries for pair in fields.items() for part in pair]
        else:
            raise AssertionError(f"cannot read {key!r} of type {kind!r}")
        if any(raw in (v if isinstance(v, bytes) else str(v).encode()) for v in values):
            found.append(text(key))
    return found


def kept_event(client: redis.Redis, sequence: int) -> bytes:
    """The event of ``sequence`` as Redis keeps it: the JSON of ``[sequence, ingest time in
    microseconds since the epoch, principal, event]``, with its plan last when it has one."""
    raw = client.hget(f"incidents:events:{sequence // 64}", str(sequence))
    assert isinstance(raw, bytes), f"no event {sequence} is stored"
    return raw


def stored_event_count(client: redis.Redis) -> int:
    """How many events Redis keeps."""
    return sum(int(client.hlen(k)) for k in client.scan_iter("incidents:events:*"))


def with_async_redis(redis_url: str, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run ``work`` on a new event loop with an asyncio Redis client of its own, closed after;
    return what it returns."""

    async def run() -> T:
        connection = connect_async(redis_url)
        try:
            return await work(connection)
        finally:
            await connection.aclose()

    return asyncio.run(run())


class SharedServer:
    """One uvicorn server for a whole test session, serving whichever app a test mounts.

    Each test still gets a fresh app (its own settings, caches and counters, its lifespan run
    at mount and at unmount), over real HTTP; only the server is not started and stopped for
    every test, which took most of a short test's time.
    """

    def __init__(self) -> None:
        self.url = ""
        self._app: ASGIApp | None = None
        self._state: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the server's own: apps start when they are mounted
            self._loop = asyncio.get_running_loop()
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        app = self._app
        if app is None:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"no app mounted"})
            return
        scope["state"] = dict(self._state)  # what the app's lifespan yielded, as uvicorn does
        await app(scope, receive, send)

    @classmethod
    @contextmanager
    def started(cls) -> Iterator[SharedServer]:
        """A shared server running in a thread until the block ends."""
        server = cls()
        with serve_in_thread(server, grace=1) as url:  # each test waited for its own requests
            server.url = url
            yield server

    @contextmanager
    def mounted(self, app: ASGIApp) -> Iterator[str]:
        """Serve ``app`` (its lifespan started) until the block ends; yield the base URL."""
        assert self._loop is not None and self._app is None, "the shared server is not free"
        lifespan = asyncio.run_coroutine_threadsafe(_Lifespan.start(app), self._loop).result(30)
        self._app, self._state = app, lifespan.state
        try:
            yield self.url
        finally:
            self._app, self._state = None, {}
            asyncio.run_coroutine_threadsafe(lifespan.stop(), self._loop).result(30)


class _Lifespan:
    """An app's ASGI lifespan, driven as a server drives it."""

    def __init__(self, app: ASGIApp) -> None:
        self.state: dict[str, Any] = {}
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}

        async def run() -> None:
            await app(scope, self.inbox.get, self.outbox.put)

        self.task: asyncio.Task[None] = asyncio.create_task(run())

    @classmethod
    async def start(cls, app: ASGIApp) -> _Lifespan:
        self = cls(app)
        await self._ask("lifespan.startup")
        return self

    async def stop(self) -> None:
        await self._ask("lifespan.shutdown")
        await self.task

    async def _ask(self, kind: str) -> None:
        await self.inbox.put({"type": kind})
        reply = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait({reply, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            self.task.result()  # the app's own error, if it raised one
            raise RuntimeError(f"the app's lifespan ended before {kind} completed")
        message = reply.result()
        if message["type"] != kind + ".complete":
            raise RuntimeError(f"{kind} failed: {message.get('message', '')}")


def event(
    type_: str = "im.incident.declare",
    data: Any = None,
    **attrs: Any,
) -> dict[str, Any]:
    """A valid structured-mode event; attributes given as keywords override or add."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests",
        "type": type_,
    }
    if data is None:
        data = sample_data(type_)
    body["data"] = data
    if type_.startswith("im.incident.") and type_ != "im.incident.declare":
        body["imincidentid"] = "INC-1"
    if type_.startswith("im.alert."):
        body["imcorrelationkey"] = "fingerprint-1"
    body.update(attrs)
    return {k: v for k, v in body.items() if v is not _DROP}


class _Drop:
    pass


_DROP: Any = _Drop()
DROP: Any = _DROP  # pass as an attribute value to leave that attribute out


def sample_data(type_: str) -> dict[str, Any]:
    return {
        "im.incident.declare": {
            "title": "Checkout down",
            "severity": "SEV2",
            "service": "checkout",
        },
        "im.incident.note": {"text": "rolled back the deploy"},
        "im.incident.role_assign": {"role": "commander", "assignee": "alice"},
        "im.incident.state_change": {"status": "mitigated", "reason": "rollback"},
        "im.alert.trigger": {"summary": "High error rate", "severity": "SEV2"},
    }.get(type_, {})


STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def post(client: httpx.Client, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(
        "/v1/events",
        content=body if isinstance(body, bytes | str) else json.dumps(body),
        headers=headers or STRUCTURED,
    )


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:incidents:problem:{slug}"
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def pointers(body: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in body.get("errors", [])]


def create_principal(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Create a principal as admin and return the response body (with its token)."""
    body: dict[str, Any] = {"name": "p", "roles": ["producer"], "publish": ["im.*"]}
    body.update(fields)
    r = client.post("/v1/principals", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_token(client: httpx.Client, token: str) -> httpx.Client:
    """A client for the same gateway that authenticates with ``token``."""
    return httpx.Client(
        verify=TEST_TLS,
        base_url=str(client.base_url),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def wait_for(
    done: Callable[[], T | None],
    timeout: float = 20.0,
    what: str = "the condition",
    every: float = 0.05,
) -> T:
    """Poll ``done`` until it returns something true, and return that; fail the test, naming
    ``what``, if it does not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (result := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s")
        time.sleep(every)
    return result
