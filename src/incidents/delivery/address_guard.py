"""Outbound safety: which sink addresses may be called, checked at registration and again on
the address actually connected to (DNS answers can change between the two). Redirects are
never followed, and proxies from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
import aiohttp.abc
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from incidents import __version__
from incidents.model.sink_url import check_url

USER_AGENT = f"incidents/{__version__}"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
INSECURE = (
    "plain http:// sinks are refused (INCIDENTS_ALLOW_INSECURE_SINKS is false); "
    "the CloudEvents webhook spec requires https://"
)
# Blocks that not every Python's ipaddress tables know yet.
NOT_PUBLIC = (
    (ipaddress.ip_network("3fff::/20"), "documentation"),  # RFC 9637
)


class SinkRefused(OSError):
    """The sink resolved to an address that is not public; nothing was sent."""


def address_problem(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_problem(ip.ipv4_mapped)
        # 6to4 carries an IPv4 address inside; a relay would forward to it.
        if ip.sixtofour is not None and (inner := address_problem(ip.sixtofour)) is not None:
            return f"6to4 of a {inner} address"
        for network, name in NOT_PUBLIC:
            if ip in network:
                return name
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    )
    for name, hit in checks:
        if hit:
            return name
    if not ip.is_global:  # CGNAT 100.64/10 and other special-purpose blocks
        return "non-global"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except ValueError as exc:  # UnicodeError from the IDNA codec: no such name
        raise OSError(f"not a resolvable name ({exc})") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def refusal(host: str, addresses: Iterable[IPAddress]) -> str | None:
    for ip in addresses:
        problem = address_problem(ip)
        if problem is not None:
            return f"{host} resolves to {ip} ({problem}), which is not a public address"
    return None


async def sink_problem(raw: str, allow_private: bool, *, allow_insecure: bool) -> str | None:
    """Why a sink URL may not be registered, or None."""
    checked = check_url(raw)
    if isinstance(checked, str):
        return checked
    scheme, host, port = checked
    if scheme != "https" and not allow_insecure:
        return INSECURE
    if allow_private:
        return None
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    return refusal(host, addresses)


class GuardedConnector(aiohttp.TCPConnector):
    """A connector that connects only to addresses that passed the check. The check runs on
    the resolved addresses the connector is about to use (IP literals included), so the
    address actually connected to is the one checked, whatever DNS said at registration.
    Without ``allow_insecure`` it opens no plain-HTTP connection at all, so a sink
    registered while insecure sinks were allowed is refused when the setting is off."""

    def __init__(self, allow_private: bool, allow_insecure: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private
        self.allow_insecure = allow_insecure

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  # aiohttp's signature, passed on
    ) -> Connection:
        if req.url.scheme != "https" and not self.allow_insecure:
            raise SinkRefused(f"refused: {INSECURE}")
        return await super().connect(req, traces, timeout)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[aiohttp.abc.ResolveResult]:
        try:
            found = await super()._resolve_host(host, port, traces)
        except UnicodeError as exc:  # the IDNA codec refuses the name: it cannot exist
            raise OSError(f"cannot resolve {host!r}: {exc}") from exc
        if not self.allow_private:
            why = refusal(host, (ipaddress.ip_address(r["host"].split("%")[0]) for r in found))
            if why is not None:
                raise SinkRefused(f"refused: {why}")
        return found


def outbound_client(
    allow_private: bool, timeout: float, connections: int = 100, *, allow_insecure: bool
) -> aiohttp.ClientSession:
    """The HTTP client for calling sinks: guarded addresses, https only unless
    ``allow_insecure``, HTTP/1.1 keep-alive, no proxies from the environment (redirects are
    refused per request with ``allow_redirects=False``)."""
    connector = GuardedConnector(
        allow_private,
        allow_insecure,
        limit=connections,
        limit_per_host=connections,
        ttl_dns_cache=None if allow_private else 0,  # re-check the address on every connect
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
        auto_decompress=False,
        skip_auto_headers=("Content-Type",),
    )


def was_refused(exc: BaseException) -> bool:
    """True when a client error came from refusing the sink's address."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SinkRefused):
            return True
        if isinstance(getattr(seen, "os_error", None), SinkRefused):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
