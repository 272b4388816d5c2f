"""The fields a subscriber sends (shaped after the CloudEvents Subscriptions API), validated.

Each problem becomes a FieldError with a JSON pointer; ``InvalidRequest`` carries them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from incidents.delivery.filters import Filter, parse_filters
from incidents.delivery.sinks import check_url
from incidents.errors import FieldError, InvalidRequest, pointer

MODES = ("structured", "binary")
STATUSES = ("active", "disabled")
FIELDS = ("sink", "protocol", "types", "source", "filters", "protocolsettings", "config",
          "description")  # fmt: skip
READ_ONLY = ("id", "status", "reason", "owner", "created_at", "updated_at", "secret", "rate")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_TYPE = re.compile(r"^[A-Za-z0-9._:/-]{1,200}\*?$|^\*$")
# Headers the gateway sets itself; a subscription may not replace them.
RESERVED_HEADERS = ("content-type", "content-length", "host", "user-agent", "transfer-encoding",
                    "connection")  # fmt: skip
RESERVED_PREFIXES = ("webhook-", "ce-")


@dataclass(frozen=True)
class Spec:
    """What a subscription asks for; the gateway adds id, owner, status and secrets."""

    sink: str
    types: tuple[str, ...] = ()
    source: str | None = None
    filters: tuple[Any, ...] = ()  # the JSON as given, kept for display and re-parsing
    headers: Mapping[str, str] = field(default_factory=dict)
    mode: str = "structured"
    handshake: bool = False
    description: str = ""

    def compiled(self) -> Filter:
        parsed, _ = parse_filters(list(self.filters))
        return parsed

    def to_dict(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "protocol": "HTTP",
            "types": list(self.types),
            "source": self.source,
            "filters": list(self.filters),
            "protocolsettings": {"headers": dict(self.headers)},
            "config": {"mode": self.mode, "handshake": self.handshake},
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Spec:
        """Read a spec stored by ``to_dict`` (already validated)."""
        return cls(
            sink=raw["sink"],
            types=tuple(raw.get("types") or ()),
            source=raw.get("source"),
            filters=tuple(raw.get("filters") or ()),
            headers=dict((raw.get("protocolsettings") or {}).get("headers") or {}),
            mode=(raw.get("config") or {}).get("mode", "structured"),
            handshake=bool((raw.get("config") or {}).get("handshake", False)),
            description=raw.get("description") or "",
        )


def parse_spec(body: Any, base: Spec | None = None) -> tuple[Spec, str | None]:
    """Validate a create body (``base`` None) or a patch over ``base``; also return a
    requested ``status`` (patch only). Raises InvalidRequest listing every problem."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    problems: list[FieldError] = []
    status: str | None = None
    merged: dict[str, Any] = base.to_dict() if base is not None else {}
    for name, value in body.items():
        if name == "status" and base is not None:
            if value not in STATUSES:
                problems.append(FieldError("/status", f"status must be one of {STATUSES}"))
            status = value
        elif name in FIELDS:
            merged[name] = value
        elif name not in READ_ONLY:
            problems.append(FieldError(pointer(name), f"unknown field {name!r}"))
    if "sink" not in merged:
        problems.append(FieldError("/sink", "sink (the webhook URL) is required"))
    spec = _check(merged, problems)
    if problems:
        raise InvalidRequest(
            "the subscription is not valid: " + "; ".join(p.detail for p in problems),
            errors=problems,
        )
    return spec, status


def _check(raw: dict[str, Any], problems: list[FieldError]) -> Spec:
    sink = raw.get("sink")
    if sink is not None:
        if not isinstance(sink, str) or len(sink) > 2048:
            problems.append(FieldError("/sink", "sink must be a URL string (at most 2048 chars)"))
        elif isinstance(why := check_url(sink), str):
            problems.append(FieldError("/sink", why))
    protocol = raw.get("protocol", "HTTP")
    if protocol not in ("HTTP", None):
        problems.append(
            FieldError("/protocol", f"protocol {protocol!r} is not supported; use HTTP")
        )
    types = raw.get("types") or []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        problems.append(FieldError("/types", "types must be a list of strings"))
        types = []
    for i, t in enumerate(types):
        if not _TYPE.match(t):
            problems.append(
                FieldError(pointer("types", i), f"{t!r} is not a type name or a prefix ending in *")
            )
    source = raw.get("source")
    if source is not None and (not isinstance(source, str) or not source):
        problems.append(FieldError("/source", "source must be a non-empty string"))
    filters = raw.get("filters") or []
    _, filter_problems = parse_filters(filters)
    problems.extend(filter_problems)
    headers = _headers(raw.get("protocolsettings"), problems)
    mode, handshake = _config(raw.get("config"), problems)
    description = raw.get("description") or ""
    if not isinstance(description, str) or len(description) > 1000:
        problems.append(FieldError("/description", "description is a string of at most 1000"))
        description = ""
    return Spec(
        sink=sink if isinstance(sink, str) else "",
        types=tuple(dict.fromkeys(types)),
        source=source if isinstance(source, str) else None,
        filters=tuple(filters) if isinstance(filters, list) else (),
        headers=headers,
        mode=mode,
        handshake=handshake,
        description=description,
    )


def _headers(raw: Any, problems: list[FieldError]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(FieldError("/protocolsettings", "protocolsettings must be an object"))
        return {}
    for name in raw:
        if name != "headers":
            problems.append(FieldError(pointer("protocolsettings", name), f"unknown {name!r}"))
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        problems.append(FieldError("/protocolsettings/headers", "headers must be an object"))
        return {}
    out: dict[str, str] = {}
    for name, value in headers.items():
        at = pointer("protocolsettings", "headers", name)
        lowered = name.lower()
        if not _TOKEN.match(name):
            problems.append(FieldError(at, f"{name!r} is not a valid header name"))
        elif lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES):
            problems.append(FieldError(at, f"{name!r} is set by the gateway"))
        elif not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            problems.append(FieldError(at, "a header value is a single-line string"))
        else:
            out[name] = value
    return out


def _config(raw: Any, problems: list[FieldError]) -> tuple[str, bool]:
    if raw is None:
        return "structured", False
    if not isinstance(raw, dict):
        problems.append(FieldError("/config", "config must be an object"))
        return "structured", False
    for name in raw:
        if name not in ("mode", "handshake"):
            problems.append(FieldError(pointer("config", name), f"unknown config {name!r}"))
    mode = raw.get("mode", "structured")
    if mode not in MODES:
        problems.append(FieldError("/config/mode", f"mode {mode!r} is not one of {MODES}"))
        mode = "structured"
    handshake = raw.get("handshake", False)
    if not isinstance(handshake, bool):
        problems.append(FieldError("/config/handshake", "handshake is true or false"))
        handshake = False
    return mode, handshake
