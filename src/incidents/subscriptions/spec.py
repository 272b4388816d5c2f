"""The fields a subscriber sends (shaped after the CloudEvents Subscriptions API), validated.

Each problem becomes a FieldError with a JSON pointer; ``InvalidRequest`` carries them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import orjson

from incidents.errors import FieldError, InvalidRequest, pointer
from incidents.model.filters import Filter, parse_filters
from incidents.model.sink_url import check_url
from incidents.model.type_patterns import MAX_TYPE_PATTERNS, is_type_pattern
from incidents.subscriptions import formats as channels
from incidents.subscriptions.secret_fields import masked


class DeliveryMode(StrEnum):
    """How the CloudEvents webhook puts an event on the wire (CloudEvents HTTP binding)."""

    STRUCTURED = "structured"  # the whole event as application/cloudevents+json
    BINARY = "binary"  # attributes as ce- headers, data as the body


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


MODES = tuple(DeliveryMode)
STATUSES = tuple(SubscriptionStatus)
FIELDS = ("sink", "protocol", "types", "source", "filters", "protocolsettings", "config",
          "description", "format", "formatsettings")  # fmt: skip
READ_ONLY = ("id", "status", "reason", "owner", "created_at", "updated_at", "secret", "rate",
             "origin")  # fmt: skip
MAX_TYPES = MAX_TYPE_PATTERNS
MAX_FORMATSETTINGS = 64 * 1024  # bytes of formatsettings as JSON
MAX_SOURCE = 2048
MAX_HEADERS = 32
MAX_HEADER_BYTES = 8192  # names and values together; many servers refuse more than 8 KiB
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
# RFC 9110 field-value: visible ASCII, space and tab inside, nothing at either end. Other
# characters (controls, DEL, anything beyond ASCII) have no agreed meaning on the wire, and
# the outbound client refuses controls outright, which would fail every delivery.
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")


@dataclass(frozen=True)
class Spec:
    """What a subscription asks for; the gateway adds id, owner, status and secrets."""

    sink: str
    types: tuple[str, ...] = ()
    source: str | None = None
    filters: tuple[Any, ...] = ()  # the JSON as given, kept for display and re-parsing
    headers: Mapping[str, str] = field(default_factory=dict)
    mode: DeliveryMode = DeliveryMode.STRUCTURED
    handshake: bool = False
    description: str = ""
    # The delivery channel (``formats``) and its settings, secrets in clear text
    # (they are encrypted where they are stored and never shown back).
    format: str = "cloudevents"
    formatsettings: Mapping[str, object] = field(default_factory=dict)

    def compiled(self) -> Filter:
        parsed, _ = parse_filters(list(self.filters))
        return parsed

    def to_dict(self) -> dict[str, object]:
        return {
            "sink": self.sink,
            "protocol": "HTTP",
            "types": list(self.types),
            "source": self.source,
            "filters": list(self.filters),
            "protocolsettings": {"headers": dict(self.headers)},
            "config": {"mode": self.mode, "handshake": self.handshake},
            "description": self.description,
            "format": self.format,
            "formatsettings": dict(self.formatsettings),
        }

    def shown(self) -> dict[str, object]:
        """As every read shows it: the secrets in ``formatsettings`` as ``***``."""
        out = self.to_dict()
        out["formatsettings"] = masked(self.formatsettings, channels.secret_pointers(self.format))
        return out

    def with_masked_secrets(self) -> Spec:
        """This spec with its secrets as ``***`` (what a change is validated against)."""
        pointers = channels.secret_pointers(self.format)
        return replace(self, formatsettings=masked(self.formatsettings, pointers))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Spec:
        """Read a spec stored by ``to_dict`` (already validated)."""
        return cls(
            sink=raw["sink"],
            types=tuple(raw.get("types") or ()),
            source=raw.get("source"),
            filters=tuple(raw.get("filters") or ()),
            headers=dict((raw.get("protocolsettings") or {}).get("headers") or {}),
            mode=DeliveryMode((raw.get("config") or {}).get("mode", DeliveryMode.STRUCTURED)),
            handshake=bool((raw.get("config") or {}).get("handshake", False)),
            description=raw.get("description") or "",
            format=raw.get("format") or "cloudevents",
            formatsettings=dict(raw.get("formatsettings") or {}),
        )


def parse_spec(body: object, base: Spec | None = None) -> tuple[Spec, str | None]:
    """Validate a create body (``base`` None) or a patch over ``base``; also return a
    requested ``status`` (patch only). Raises InvalidRequest listing every problem."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    problems: list[FieldError] = []
    status: str | None = None
    merged: dict[str, object] = base.to_dict() if base is not None else {}
    for name, value in body.items():
        if name == "status" and base is not None:
            if value not in STATUSES:
                shown = tuple(str(s) for s in STATUSES)
                problems.append(FieldError("/status", f"status must be one of {shown}"))
            status = value
        elif name in FIELDS:
            merged[name] = value
        elif name not in READ_ONLY:
            problems.append(FieldError(pointer(name), f"unknown field {name!r}"))
    if "sink" not in merged:
        problems.append(FieldError("/sink", "sink (the webhook URL) is required"))
    spec = _check(merged, problems)
    if spec.format in channels.NAMES:
        # The channel's own settings (its format, formatsettings and what it needs of the
        # rest); only the CloudEvents webhook takes headers, a mode or a handshake.
        problems.extend(_format_rules(spec))
        problems.extend(channels.validate(spec))
    if problems:
        raise InvalidRequest(
            "the subscription is not valid: " + "; ".join(p.detail for p in problems),
            errors=problems,
        )
    return spec, status


def _check(raw: Mapping[str, object], problems: list[FieldError]) -> Spec:
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
    types = _types(raw.get("types"), problems)
    source = raw.get("source")
    if source is not None and (
        not isinstance(source, str) or not source or len(source) > MAX_SOURCE
    ):
        problems.append(
            FieldError("/source", f"source must be a non-empty string of at most {MAX_SOURCE}")
        )
        source = None
    filters = raw.get("filters")
    if filters is None:
        filters = []
    _, filter_problems = parse_filters(filters)
    problems.extend(filter_problems)
    headers = _headers(raw.get("protocolsettings"), problems)
    mode, handshake = _config(raw.get("config"), problems)
    format_, formatsettings = _format(raw.get("format"), raw.get("formatsettings"), problems)
    description = raw.get("description")
    if description is None:
        description = ""
    elif not isinstance(description, str) or len(description) > 1000:
        problems.append(FieldError("/description", "description is a string of at most 1000"))
        description = ""
    return Spec(
        sink=sink if isinstance(sink, str) else "",
        types=tuple(dict.fromkeys(types)),
        source=source,
        filters=tuple(filters) if isinstance(filters, list) else (),
        headers=headers,
        mode=mode,
        handshake=handshake,
        description=description,
        format=format_,
        formatsettings=formatsettings,
    )


def _format(
    raw: object, settings: object, problems: list[FieldError]
) -> tuple[str, dict[str, object]]:
    """The format (a registered channel; "" when not one) and its settings (an object)."""
    format_ = channels.DEFAULT if raw is None else raw
    if not isinstance(format_, str) or format_ not in channels.NAMES:
        problems.append(FieldError("/format", f"format {format_!r} is not one of {channels.NAMES}"))
        format_ = ""
    if settings is None:
        return format_, {}
    if not isinstance(settings, dict):
        problems.append(FieldError("/formatsettings", "formatsettings must be an object"))
        return format_, {}
    if len(orjson.dumps(settings)) > MAX_FORMATSETTINGS:
        problems.append(
            FieldError("/formatsettings", f"formatsettings hold at most {MAX_FORMATSETTINGS} bytes")
        )
        return format_, {}
    return format_, settings


def _format_rules(spec: Spec) -> Sequence[FieldError]:
    """What a format allows of the fields every subscription has."""
    if spec.format == channels.DEFAULT:
        if spec.formatsettings:
            return [FieldError("/formatsettings", "the cloudevents format takes no formatsettings")]
        return []
    problems = []
    only = "applies to the cloudevents format only"
    if spec.headers:
        problems.append(FieldError("/protocolsettings/headers", f"headers: {only}"))
    if spec.mode != DeliveryMode.STRUCTURED:
        problems.append(FieldError("/config/mode", f"mode: {only}"))
    if spec.handshake:
        problems.append(FieldError("/config/handshake", f"the handshake {only}"))
    return problems


def _types(raw: object, problems: list[FieldError]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        problems.append(FieldError("/types", "types must be a list of strings"))
        return []
    if len(raw) > MAX_TYPES:
        problems.append(FieldError("/types", f"types lists at most {MAX_TYPES} patterns"))
        return []
    for i, t in enumerate(raw):
        if not is_type_pattern(t):
            problems.append(
                FieldError(pointer("types", i), f"{t!r} is not a type name or a prefix ending in *")
            )
    return raw


def _headers(raw: object, problems: list[FieldError]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(FieldError("/protocolsettings", "protocolsettings must be an object"))
        return {}
    for name in raw:
        if name != "headers":
            problems.append(FieldError(pointer("protocolsettings", name), f"unknown {name!r}"))
    headers = raw.get("headers")
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        problems.append(FieldError("/protocolsettings/headers", "headers must be an object"))
        return {}
    if len(headers) > MAX_HEADERS:
        problems.append(FieldError("/protocolsettings/headers", f"at most {MAX_HEADERS} headers"))
        return {}
    out: dict[str, str] = {}
    seen: set[str] = set()
    size = 0
    for name, value in headers.items():
        at = pointer("protocolsettings", "headers", name)
        lowered = name.lower()
        if not _TOKEN.fullmatch(name):
            problems.append(FieldError(at, f"{name!r} is not a valid header name"))
        elif lowered in seen:
            problems.append(FieldError(at, f"{name!r} is given twice (names ignore case)"))
        elif not isinstance(value, str):
            problems.append(FieldError(at, "a header value is a string"))
        elif not _FIELD_VALUE.fullmatch(value):
            problems.append(
                FieldError(
                    at,
                    "a header value is printable ASCII: no control characters, DEL or"
                    " non-ASCII text, and no space or tab at either end (RFC 9110)",
                )
            )
        else:
            seen.add(lowered)
            size += len(name) + len(value)
            out[name] = value
    if size > MAX_HEADER_BYTES:
        problems.append(
            FieldError(
                "/protocolsettings/headers",
                f"headers hold at most {MAX_HEADER_BYTES} bytes of names and values",
            )
        )
    return out


def _config(raw: object, problems: list[FieldError]) -> tuple[DeliveryMode, bool]:
    if raw is None:
        return DeliveryMode.STRUCTURED, False
    if not isinstance(raw, dict):
        problems.append(FieldError("/config", "config must be an object"))
        return DeliveryMode.STRUCTURED, False
    for name in raw:
        if name not in ("mode", "handshake"):
            problems.append(FieldError(pointer("config", name), f"unknown config {name!r}"))
    mode = raw.get("mode", DeliveryMode.STRUCTURED)
    if mode not in MODES:
        shown = tuple(str(m) for m in MODES)
        problems.append(FieldError("/config/mode", f"mode {mode!r} is not one of {shown}"))
        mode = DeliveryMode.STRUCTURED
    handshake = raw.get("handshake", False)
    if not isinstance(handshake, bool):
        problems.append(FieldError("/config/handshake", "handshake is true or false"))
        handshake = False
    return DeliveryMode(mode), handshake
