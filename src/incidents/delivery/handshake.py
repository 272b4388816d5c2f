"""The abuse-protection handshake of the CloudEvents webhook spec: before a subscription
becomes active the sink is asked, with OPTIONS, whether it accepts our deliveries."""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp

from incidents.delivery.address_guard import outbound_client, was_refused

# WebHook-Allowed-Rate is a positive decimal count; anything else (a sign, a fraction,
# "²" or other Unicode digits) is treated as absent, which the spec reads as "no limit".
_RATE = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Handshake:
    allowed: bool
    rate: int | None = None  # deliveries per minute the sink granted; None: no limit
    reason: str = ""


def allowed_rate(raw: str) -> int | None:
    """The granted rate from a WebHook-Allowed-Rate value, or None when it is not one."""
    text = raw.strip()
    if not _RATE.fullmatch(text) or int(text) == 0:
        return None
    return int(text)


def _text(reason: str) -> str:
    """The reason with undecodable bytes from the sink (kept by the HTTP parser as lone
    surrogates) written as escapes, so it can be stored and shown as JSON."""
    return reason.encode("utf-8", "backslashreplace").decode("utf-8")


async def handshake(
    sink: str,
    origin: str,
    allow_private: bool,
    timeout: float,  # noqa: ASYNC109  # the client's per-request timeout setting
    *,
    allow_insecure: bool,
) -> Handshake:
    async with outbound_client(
        allow_private, timeout, connections=1, allow_insecure=allow_insecure
    ) as client:
        try:
            async with client.options(
                sink, headers={"WebHook-Request-Origin": origin}, allow_redirects=False
            ) as response:
                status = response.status
                allowed = response.headers.get("webhook-allowed-origin", "").strip()
                raw_rate = response.headers.get("webhook-allowed-rate", "")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            what = "refused" if was_refused(exc) else "failed"
            return Handshake(False, reason=_text(f"handshake {what}: {exc}"))
    if not 200 <= status < 300 or allowed not in (origin, "*"):
        return Handshake(
            False,
            reason=_text(
                f"handshake refused: HTTP {status}, "
                f"WebHook-Allowed-Origin {allowed or 'missing'} (we are {origin!r})"
            ),
        )
    return Handshake(True, allowed_rate(raw_rate))
