"""One HTTP delivery: encode the event (structured or binary mode), sign it, POST it, and
classify what came back per the CloudEvents webhook spec."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from incidents.delivery import signing
from incidents.delivery.filters import canonical
from incidents.delivery.sinks import was_refused
from incidents.model.cloudevent import CloudEvent

STRUCTURED = "application/cloudevents+json; charset=utf-8"
BODY_KEPT = 1024  # bytes of the response body kept in the attempt log
DELIVERED, GONE, FAILED, REFUSED = "delivered", "gone", "failed", "refused"
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}", re.ASCII)


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int | None = None
    latency_ms: float = 0.0
    error: str = ""
    body: str = ""
    retry_after: float | None = None  # seconds the sink asked us to wait (429/503)


def _header_value(value: Any) -> str:
    text = canonical(value)
    # The HTTP binding percent-encodes space, '"', '%' and everything outside printable ASCII.
    return quote(text, safe="!#$&'()*+,/:;<=>?@[\\]^_`{|}~-.")


def encode(event: CloudEvent, mode: str) -> tuple[bytes, dict[str, str]]:
    """The body and content headers of an event in ``structured`` or ``binary`` mode."""
    if mode == "structured":
        return orjson.dumps(event.to_dict()), {"content-type": STRUCTURED}
    headers = {}
    for name, value in event.attributes.items():
        if name != "datacontenttype":
            headers["ce-" + name] = _header_value(value)
    content_type = str(event.get("datacontenttype") or "application/json")
    headers["content-type"] = content_type
    if event.data_base64 is not None:
        body = base64.b64decode(event.data_base64)
    elif event.data is None:
        body = b""
    elif isinstance(event.data, str) and "json" not in content_type:
        body = event.data.encode()
    else:
        body = orjson.dumps(event.data)
    return body, headers


def retry_after(raw: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date, RFC 9110 10.2.3);
    None for anything else (a value that is not plain ASCII digits or a date is ignored)."""
    if not raw:
        return None
    raw = raw.strip()
    if _DELTA_SECONDS.fullmatch(raw):
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


async def send(
    client: aiohttp.ClientSession,
    sink: str,
    msg_id: str,
    event: CloudEvent,
    mode: str,
    secrets: Sequence[str],
    extra_headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109  # the delivery timeout setting, applied inside,
) -> Outcome:
    started = time.perf_counter()
    try:
        body, content_headers = encode(event, mode)
        headers = {**extra_headers, **content_headers}
        headers.update(signing.headers(secrets, msg_id, int(time.time()), body))
        async with asyncio.timeout(timeout):
            async with client.post(
                sink, data=body, headers=headers, allow_redirects=False
            ) as response:
                kept = await response.content.read(BODY_KEPT)
                status = response.status
                retry_header = response.headers.get("retry-after")
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return Outcome(FAILED, latency_ms=_ms(started), error=f"timed out after {timeout:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        kind = REFUSED if was_refused(exc) else FAILED
        return Outcome(kind, latency_ms=_ms(started), error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # A request that cannot be built or sent (a header aiohttp refuses, say) is a failed
        # attempt like any other, never a lane that dies and is redone forever.
        return Outcome(
            FAILED, latency_ms=_ms(started), error=f"cannot send: {type(exc).__name__}: {exc}"
        )
    text = kept[:BODY_KEPT].decode("utf-8", "replace")
    latency = _ms(started)
    if 200 <= status < 300:
        return Outcome(DELIVERED, status, latency, body=text)
    if status == 410:
        return Outcome(GONE, status, latency, "410 Gone: the sink asked to stop", text)
    wait = None
    if status in (429, 503):
        wait = retry_after(retry_header, time.time())
    error = f"HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return Outcome(FAILED, status, latency, error, text, wait)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
