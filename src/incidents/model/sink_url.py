"""A sink URL as the outbound client will read it: ``check_url`` says whether it is one the
gateway may call (http or https, a host that is a DNS name or an IP address, no credentials,
no fragment), before any lookup. The subscriptions' sinks and the connectors' OAuth token URLs
are checked with it at registration; ``delivery/address_guard.py`` checks the addresses
connected to.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import yarl

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_NUMERIC = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")  # legacy IPv4 forms such as 2130706433


def check_url(raw: str) -> tuple[str, str, int] | str:
    """(scheme, host, port) of a usable sink URL, or why it is not one. The host is the
    ASCII form that is looked up and connected to (IDNA-encoded, IPv6 without brackets).

    The URL is read by the standard library and by the parser the outbound client uses
    (yarl); anything either refuses or reads differently is refused, so what was checked is
    what is called."""
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F or c.isspace() for c in raw):
        return "the sink URL must not contain spaces or control characters"
    try:
        parts = urlsplit(raw)
        port = parts.port
        url = yarl.URL(raw)
        host = url.raw_host
        decoded = url.host  # decoding checks the punycode of xn-- labels
    except (ValueError, TypeError) as exc:  # UnicodeError is a ValueError
        return f"{raw!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"the sink must be an http or https URL, not {raw!r}"
    if not parts.hostname or not host or not decoded:
        return f"the sink URL {raw!r} has no host"
    if "@" in parts.netloc:
        return "the sink URL must not carry credentials; use protocolsettings.headers"
    if parts.fragment:
        return "the sink URL must not have a fragment"
    if port == 0:
        return "the sink URL's port must be from 1 to 65535"
    why = _host_problem(host, bracketed="[" in parts.netloc)
    if why is not None:
        return why
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _host_problem(host: str, bracketed: bool) -> str | None:
    """Why a host (as yarl encodes it) cannot be resolved and connected to, or None."""
    if bracketed:
        if "%" in host:
            return "the sink host must not carry an IPv6 zone identifier"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"the sink host [{host}] is not an IPv6 address"
        return None
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return (
            f"the sink host {host!r} is not a DNS name (labels of 1 to 63 letters, digits,"
            " '-' or '_', at most 253 characters in all)"
        )
    if _NUMERIC.fullmatch(labels[-1]):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return f"the sink host {host!r} is not a dotted-quad IPv4 address"
    return None
