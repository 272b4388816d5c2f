"""Sending a channel's requests over the worker's one keep-alive aiohttp client.

A request that gets no response (refused, timed out, unreachable, or one aiohttp cannot even
build) becomes a failed ``Outcome`` here, so a channel only ever classifies responses.
"""

from __future__ import annotations

import time

import aiohttp

from incidents.connectors.channel_base import Outcome, OutcomeKind, Request, Response
from incidents.delivery.address_guard import was_refused

BODY_KEPT = 1024  # bytes of the response body kept (for the attempt log)


class AiohttpTransport:
    def __init__(self, client: aiohttp.ClientSession, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        # aiohttp's own whole-request timer (connecting, sending, reading the response): one
        # timer per request, not a second one around it.
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __call__(self, request: Request) -> Response | Outcome:
        started = time.perf_counter()
        try:
            async with self.client.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                kept = await response.content.read(BODY_KEPT)
                headers = {k.lower(): v for k, v in response.headers.items()}
                status = response.status
        except (TimeoutError, aiohttp.ServerTimeoutError):
            error = f"timed out after {self.timeout:g}s"
            return Outcome(OutcomeKind.FAILED, latency_ms=_ms(started), error=error)
        except (aiohttp.ClientError, OSError) as exc:
            kind = OutcomeKind.REFUSED if was_refused(exc) else OutcomeKind.FAILED
            return Outcome(kind, latency_ms=_ms(started), error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # A request that cannot be built or sent (a header aiohttp refuses, say) is a failed
            # attempt like any other, never a lane that dies and is redone forever.
            error = f"cannot send: {type(exc).__name__}: {exc}"
            return Outcome(OutcomeKind.FAILED, latency_ms=_ms(started), error=error)
        return Response(status, headers, kept[:BODY_KEPT], _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
