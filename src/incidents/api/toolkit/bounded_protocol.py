"""The HTTP protocol ``incidents serve`` runs: uvicorn's httptools protocol with two bounds on
the request head that neither uvicorn nor httptools has.

- Size: httptools buffers a request line and headers of any size before the app sees them, so
  a client could make the server hold megabytes per connection. Once more than
  ``INCIDENTS_MAX_HEADER_BYTES`` arrived without the head being complete, the answer is a 431
  problem and the connection closes.
- Time: nothing limits how long the head takes to arrive (a client dripping a header a byte at
  a time holds its connection forever). The head must be complete within
  ``INCIDENTS_BODY_TIMEOUT`` of its first byte, else a 408 problem and the connection closes.
  The body's own time limit is the application's (``request_limits``).

It also writes a response of known length (``content-length``) in one write, head and body
together: uvicorn writes the head when the application starts the response and the body when
it sends it, two sends (and two packets) for every answer.
"""

from __future__ import annotations

import asyncio
import os
from functools import cache
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from incidents.errors import HeadersTooLarge, IncidentsError, RequestTimeout
from incidents.settings import Settings


@cache
def head_limits() -> tuple[int, float]:
    """(bytes, seconds) the request head may take, from this server process's settings."""
    settings = Settings.from_env(os.environ)
    return settings.max_header_bytes, settings.body_timeout


class HeadWithBody:
    """The transport one response writes to: the head of a response of known length is held
    until its body's first write, and both go in one write. Anything else (an interim
    ``100 Continue``, a chunked response) is written at once; closing writes a held head first,
    as it would have been (a response started and then abandoned).

    Not for HEAD requests, whose answer has no body write to join."""

    __slots__ = ("cycle", "head", "joined", "transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self.transport, self.cycle = transport, cycle
        self.head: bytes | None = None
        self.joined = False  # the head has been written

    def write(self, data: bytes) -> None:
        if self.head is not None:
            data, self.head = self.head + data, None
        elif not self.joined and self.cycle.response_started:
            self.joined = True  # the first write after the response started is its head
            if self.cycle.chunked_encoding is False:
                self.head = bytes(data)
                return
        self.transport.write(data)

    def close(self) -> None:
        if self.head is not None:
            head, self.head = self.head, None
            self.transport.write(head)
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with bounded request heads (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.head_seconds = head_limits()
        self.in_head = True  # between requests and until the headers are complete
        self.head_bytes = 0
        self.head_tail = b""  # the last bytes seen of the head, for a blank line across chunks
        self.head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            # Count the head's bytes in this chunk (up to its blank line, which may straddle
            # chunks) before the parser sees them: however the client's packets coalesce, a
            # head over the limit is refused, never parsed.
            seen = self.head_tail + data
            end = seen.find(b"\r\n\r\n")
            self.head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self.head_tail))
            self.head_tail = seen[-3:]
            if self.head_bytes > self.max_head_bytes:
                self.refuse(
                    HeadersTooLarge(
                        f"the request line and headers exceed {self.max_head_bytes} bytes "
                        "(INCIDENTS_MAX_HEADER_BYTES)",
                        extra={"limit": self.max_head_bytes},
                    )
                )
                return
            if end < 0 and self.head_timer is None:  # a head that ends here needs no timer
                self.head_timer = self.loop.call_later(self.head_seconds, self.head_too_slow)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self.end_of_head()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before and self.scope["method"] != "HEAD":  # a new request
            self.cycle.transport = HeadWithBody(self.transport, self.cycle)  # type: ignore[assignment]  # the transport calls a response cycle makes

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_bytes, self.head_tail = True, 0, b""  # the next request

    def connection_lost(self, exc: Exception | None) -> None:
        self.end_of_head()
        super().connection_lost(exc)

    def end_of_head(self) -> None:
        self.in_head = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_too_slow(self) -> None:
        self.head_timer = None
        if self.in_head and not self.transport.is_closing():
            self.refuse(
                RequestTimeout(
                    f"the request line and headers did not arrive within {self.head_seconds:g} s "
                    "(INCIDENTS_BODY_TIMEOUT)"
                )
            )

    def refuse(self, error: IncidentsError) -> None:
        """Answer with the error as problem+json and close: the head is never read on."""
        self.end_of_head()
        if self.transport.is_closing():
            return
        body = orjson.dumps(error.to_problem())
        head = (
            f"HTTP/1.1 {error.status} {error.title}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()
