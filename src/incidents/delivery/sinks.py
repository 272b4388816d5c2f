"""Outbound safety: which sink addresses may be called, checked at registration and again on
the address actually connected to (DNS answers can change between the two). Redirects are
never followed, and proxies from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from incidents import __version__

USER_AGENT = f"incidents/{__version__}"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SinkRefused(httpcore.ConnectError):
    """The sink resolved to an address that is not public; nothing was sent."""


def address_problem(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_problem(ip.ipv4_mapped)
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


def check_url(raw: str) -> tuple[str, str, int] | str:
    """(scheme, host, port) of a usable sink URL, or why it is not one."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        return f"{raw!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"the sink must be an http or https URL, not {raw!r}"
    if not parts.hostname:
        return f"the sink URL {raw!r} has no host"
    if parts.username or parts.password:
        return "the sink URL must not carry credentials; use protocolsettings.headers"
    if parts.fragment:
        return "the sink URL must not have a fragment"
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def refusal(host: str, addresses: Iterable[IPAddress]) -> str | None:
    for ip in addresses:
        problem = address_problem(ip)
        if problem is not None:
            return f"{host} resolves to {ip} ({problem}), which is not a public address"
    return None


async def sink_problem(raw: str, allow_private: bool) -> str | None:
    """Why a sink URL may not be registered, or None."""
    checked = check_url(raw)
    if isinstance(checked, str):
        return checked
    _, host, port = checked
    if allow_private:
        return None
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    return refusal(host, addresses)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself and connects only to the public address it checked."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = host
        if not self.allow_private:
            try:
                addresses = await resolve(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            why = refusal(host, addresses)
            if why is not None:
                raise SinkRefused(f"refused: {why}")
            target = str(addresses[0])
        return await self.inner.connect_tcp(
            target,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, allow_private: bool, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx builds its pool without a network-backend hook; this pool is the same one
        # with the guarded backend, so the check runs on every new connection.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allow_private),
        )


def outbound_client(
    allow_private: bool, timeout: float, connections: int = 100
) -> httpx.AsyncClient:
    """The HTTP client for calling sinks: guarded, HTTP/1.1 keep-alive, no redirects."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private, limits),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def was_refused(exc: BaseException) -> bool:
    """True when an httpx error came from refusing the sink's address."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SinkRefused):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
