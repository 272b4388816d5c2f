"""The abuse-protection handshake of the CloudEvents webhook spec: before a subscription
becomes active the sink is asked, with OPTIONS, whether it accepts our deliveries."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from incidents.delivery.sinks import outbound_client, was_refused


@dataclass(frozen=True)
class Handshake:
    allowed: bool
    rate: int | None = None  # deliveries per minute the sink granted; None: no limit
    reason: str = ""


async def handshake(
    sink: str,
    origin: str,
    allow_private: bool,
    timeout: float,  # noqa: ASYNC109  # the client's per-request timeout setting
) -> Handshake:
    async with outbound_client(allow_private, timeout, connections=1) as client:
        try:
            async with client.options(
                sink, headers={"WebHook-Request-Origin": origin}, allow_redirects=False
            ) as response:
                status = response.status
                allowed = response.headers.get("webhook-allowed-origin", "").strip()
                raw_rate = response.headers.get("webhook-allowed-rate", "").strip()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            what = "refused" if was_refused(exc) else "failed"
            return Handshake(False, reason=f"handshake {what}: {exc}")
    if not 200 <= status < 300 or allowed not in (origin, "*"):
        return Handshake(
            False,
            reason=f"handshake refused: HTTP {status}, "
            f"WebHook-Allowed-Origin {allowed or 'missing'} (we are {origin!r})",
        )
    rate = int(raw_rate) if raw_rate.isdigit() and int(raw_rate) > 0 else None
    return Handshake(True, rate)
