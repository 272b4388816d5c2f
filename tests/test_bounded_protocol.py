"""The server's own bounds on the request head (what `incidents serve` runs): too many header
bytes or a head that never finishes get a problem answer and a closed connection, before the
application is involved and whatever the size or pace of what the client sends."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, cast

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from incidents.api.toolkit.bounded_protocol import BoundedHttpToolsProtocol, head_limits
from incidents.store.embedded import free_port

# Each test serves its app under uvicorn over a raw socket of its own.
pytestmark = pytest.mark.wired

HEADER_LIMIT = 4096
HEAD_SECONDS = 1.0


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@contextmanager
def serving(protocol: type[BoundedHttpToolsProtocol]) -> Iterator[int]:
    """A hello app served in a thread with ``protocol``; yields its port."""
    head_limits.cache_clear()
    port = free_port()
    app = Starlette(routes=[Route("/", hello, methods=["GET", "HEAD"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        head_limits.cache_clear()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A server with the bounded protocol and small limits; yields its port."""
    monkeypatch.setenv("INCIDENTS_MAX_HEADER_BYTES", str(HEADER_LIMIT))
    monkeypatch.setenv("INCIDENTS_BODY_TIMEOUT", str(HEAD_SECONDS))
    with serving(BoundedHttpToolsProtocol) as port:
        yield port


def exchange(port: int, *chunks: bytes, pause: float = 0.0) -> tuple[bytes, float]:
    """Send the chunks (pausing between them), read until the server closes; the answer and
    the seconds it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(pause)
        except OSError:
            pass  # the server may close while the client is still sending
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    return answer, time.monotonic() - started


def problem(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/problem+json" in head.lower()
    found: dict[str, object] = json.loads(body)
    return status, found


def test_a_normal_request_is_served(server: int) -> None:
    """A request within both bounds is answered by the application."""
    answer, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")


def test_a_megabyte_of_headers_is_431_without_reading_it_all(server: int) -> None:
    """A 1 MB header is refused with 431 once the limit is passed; the rest is never read."""
    big = b"X-Big: " + b"a" * 1_000_000 + b"\r\n"
    answer, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    status, body = problem(answer)
    assert status == 431 and body["limit"] == HEADER_LIMIT


def test_many_small_headers_over_the_limit_are_431(server: int) -> None:
    """The bound counts the whole head, however it is split into headers and packets."""
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
    chunks = [headers[i : i + 1000] for i in range(0, len(headers), 1000)]
    answer, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n", *chunks, b"\r\n")
    assert problem(answer)[0] == 431


def test_a_head_over_the_limit_in_one_packet_is_431(server: int) -> None:
    """A whole head over the limit arriving in one packet (headers complete) is still 431."""
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
    answer, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert problem(answer)[0] == 431


def test_a_head_that_never_finishes_is_408_in_time(server: int) -> None:
    """A client that starts a request and sends no more gets 408 after the head timeout."""
    answer, took = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n")
    status, body = problem(answer)
    assert status == 408 and body["type"] == "urn:incidents:problem:request-timeout"
    assert HEAD_SECONDS * 0.9 <= took < HEAD_SECONDS + 3


def test_a_dripping_head_is_408_however_steady_the_drip(server: int) -> None:
    """Sending a byte every 0.1 s keeps the connection busy but not past the head timeout."""
    drip = [bytes([c]) for c in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100]
    answer, took = exchange(server, *drip, pause=0.1)
    assert problem(answer)[0] == 408
    assert took < HEAD_SECONDS + 3


def test_keep_alive_requests_each_get_the_full_bounds(server: int) -> None:
    """Two requests on one connection: the head budget starts again for the second."""
    one = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    two = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    answer, _ = exchange(server, one, two, pause=0.2)
    assert answer.count(b"HTTP/1.1 200") == 2


class CountingTransport:
    """A connection's transport that records each write before making it."""

    def __init__(self, transport: asyncio.BaseTransport, writes: list[bytes]) -> None:
        self.transport, self.writes = transport, writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        cast(asyncio.Transport, self.transport).write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CountingProtocol(BoundedHttpToolsProtocol):
    """The served protocol, over a transport that counts its writes (the socket's sends)."""

    writes: ClassVar[list[bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        counting = CountingTransport(transport, CountingProtocol.writes)
        super().connection_made(cast(asyncio.Transport, counting))


def test_an_answer_of_known_length_leaves_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Head and body of a content-length answer go to the socket in one write, not two."""
    monkeypatch.setenv("INCIDENTS_MAX_HEADER_BYTES", str(HEADER_LIMIT))
    with serving(CountingProtocol) as port:
        CountingProtocol.writes.clear()
        answer, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")
        assert CountingProtocol.writes == [answer]
        head, _ = exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 5" in head
        assert head.endswith(b"\r\n\r\n")  # a HEAD answer is its head alone, still sent
