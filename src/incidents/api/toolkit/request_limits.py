"""Bounds on what one client can make the gateway hold, enforced in the app itself so they
hold under any ASGI server: the size of the request headers (431) and the time the request
body may take to arrive (408). Both answers are problem+json and close the connection."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incidents.api.toolkit.responses import problem_response
from incidents.errors import BodyTimeout, HeadersTooLarge


def header_bytes(scope: Scope) -> int:
    """The request's header section as sent: ``name: value`` and CRLF per field."""
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class RequestLimits:
    def __init__(self, app: ASGIApp, max_header_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = header_bytes(scope)
        if size > self.max_header_bytes:
            error = HeadersTooLarge(
                f"the request headers take {size} bytes; this gateway accepts at most "
                f"{self.max_header_bytes}",
                extra={"limit": self.max_header_bytes},
            )
            response = problem_response(
                error.to_problem(scope["path"]), error.status, error.headers
            )
            await response(scope, receive, send)
            return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` with a deadline for the whole body, counted from the request's start;
        once the body is complete, messages (a disconnect) pass through unbounded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        body_done = False

        async def bounded_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            pending = receive()
            finished, step = (
                _first_step(pending) if isinstance(pending, types.CoroutineType) else (False, None)
            )
            if finished:  # the message was there already: nothing to wait for, no timer
                message = cast(Message, step)
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await (
                            _resume(pending, step)
                            if isinstance(pending, types.CoroutineType)
                            else pending
                        )
                except TimeoutError:
                    raise BodyTimeout(
                        f"the request body did not arrive within {self.body_timeout:g} s",
                        extra={"limit_seconds": self.body_timeout},
                    ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return bounded_receive


def _first_step(pending: Coroutine[Any, Any, Message]) -> tuple[bool, Any]:
    """Run ``pending`` until it first waits: ``(True, its result)`` when it finished without
    waiting, else ``(False, what it waits on)``, to be handed to ``_resume``."""
    try:
        return False, pending.send(None)
    except StopIteration as done:
        return True, done.value


@types.coroutine
def _resume(pending: Coroutine[Any, Any, Message], step: Any) -> Generator[Any, Any, Message]:
    """Await the rest of a coroutine ``_first_step`` started (it waits on ``step``), as
    ``await`` would have: results and exceptions (a cancellation) pass through."""
    while True:
        try:
            sent = yield step
        except GeneratorExit:
            pending.close()
            raise
        except BaseException as exc:  # thrown in by the task: a cancellation, say
            try:
                step = pending.throw(exc)
            except StopIteration as done:
                return cast(Message, done.value)
        else:
            try:
                step = pending.send(sent)
            except StopIteration as done:
                return cast(Message, done.value)
