"""The OpenAPI description of a subscription: as read, and as POST or PATCH accept it
(derived from the same limits and patterns ``subscriptions.spec`` and ``filters`` enforce)."""

from __future__ import annotations

from incidents.api.toolkit.openapi_document import JSONObject, any_case, component_ref
from incidents.model.filters import (
    DIALECTS,
    FILTER,
    MAX_DEPTH,
    MAX_TERMS,
    MAX_VALUE,
)
from incidents.model.sql_filter import SQL_MAX_DEPTH, SQL_MAX_IN, SQL_MAX_LENGTH
from incidents.model.type_patterns import TYPE_PATTERN
from incidents.subscriptions import formats, spec
from incidents.subscriptions.formats import NAMES

SUBSCRIPTION = {
    "type": "object",
    "required": ["sink"],
    "properties": {
        "id": {"type": "string", "readOnly": True},
        "sink": {"type": "string", "format": "uri"},
        "protocol": {"const": "HTTP"},
        "types": {"type": "array", "items": {"type": "string"}},
        "source": {"type": ["string", "null"]},
        "filters": {"type": "array", "items": {"type": "object"}},
        "protocolsettings": {
            "type": "object",
            "properties": {
                "headers": {"type": "object", "additionalProperties": {"type": "string"}}
            },
        },
        "config": {
            "type": "object",
            "properties": {
                "mode": {"enum": ["structured", "binary"]},
                "handshake": {"type": "boolean"},
            },
        },
        "description": {"type": "string"},
        "format": {"enum": list(NAMES)},
        "formatsettings": {
            "type": "object",
            "description": 'the format\'s settings; its secrets read as "***"',
        },
        "status": {"enum": ["active", "disabled"]},
        "reason": {"type": ["string", "null"], "readOnly": True},
        "rate": {
            "type": ["integer", "null"],
            "readOnly": True,
            "description": "deliveries per minute granted by the handshake",
        },
        "origin": {
            "type": ["string", "null"],
            "readOnly": True,
            "description": "the WebHook-Request-Origin the handshake granted",
        },
        "secret": {"type": "string", "readOnly": True, "description": "on create only"},
    },
}


def _exactly(pattern: str) -> str:
    return f"^(?:{pattern})$"


def subscription_input(create: bool) -> JSONObject:
    """What POST (``create``) or PATCH accepts: unknown fields are refused; the read-only ones
    a client may send back are ignored (and ``status`` is read only on create)."""
    reserved = [any_case(h) + "$" for h in formats.RESERVED_HEADERS] + [
        any_case(p) for p in formats.RESERVED_PREFIXES
    ]
    fields: JSONObject = {
        "sink": {
            "type": "string",
            "format": "uri",
            "maxLength": 2048,
            "description": "the webhook URL; https unless INCIDENTS_ALLOW_INSECURE_SINKS",
        },
        "protocol": {"enum": ["HTTP", None]},
        "types": {
            "type": ["array", "null"],
            "maxItems": spec.MAX_TYPES,
            "items": {"type": "string", "pattern": _exactly(TYPE_PATTERN.pattern)},
            "description": "event types, or prefixes ending in *; none: every type",
        },
        "source": {"type": ["string", "null"], "minLength": 1, "maxLength": spec.MAX_SOURCE},
        "filters": {
            "type": ["array", "null"],
            "items": component_ref(FILTER),
            "description": "CloudEvents Subscriptions API filters; all must match. all, any"
            f" and not nest at most {MAX_DEPTH} deep; at most {MAX_TERMS} expressions and"
            " attribute tests in all; sql is CloudEvents SQL v1.0.0",
        },
        "protocolsettings": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "headers": {
                    "type": ["object", "null"],
                    "description": "extra headers sent with each delivery (printable ASCII"
                    f" values, at most {spec.MAX_HEADER_BYTES} bytes of names and values)",
                    "maxProperties": spec.MAX_HEADERS,
                    "propertyNames": {
                        "pattern": _exactly(spec._TOKEN.pattern),
                        "not": {"pattern": f"^(?:{'|'.join(reserved)})"},
                    },
                    "additionalProperties": {
                        "type": "string",
                        "pattern": _exactly(spec._FIELD_VALUE.pattern),
                    },
                }
            },
        },
        "config": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {"mode": {"enum": list(spec.MODES)}, "handshake": {"type": "boolean"}},
        },
        "description": {"type": ["string", "null"], "maxLength": 1000},
        "format": {
            "type": ["string", "null"],
            "enum": [*NAMES, None],
            "description": "the delivery channel: the signed CloudEvents webhook (default) or a"
            " connector",
        },
        "formatsettings": {
            "type": ["object", "null"],
            "description": "the format's settings (auth, mapping, fields); secrets are"
            ' write-only, stored encrypted under INCIDENTS_SECRET_KEY; "***" keeps the'
            " stored one",
        },
    }
    read_only = {name: {"readOnly": True, "description": "ignored"} for name in spec.READ_ONLY}
    if not create:
        read_only["status"] = {"enum": list(spec.STATUSES)}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["sink"] if create else [],
        "properties": read_only | fields,
    }


def filter_schema() -> JSONObject:
    """One filter expression: an object with exactly one dialect key."""

    def compare(non_empty: bool) -> JSONObject:
        return {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z0-9]{1,20}$"},
            "additionalProperties": {
                "type": "string",
                "minLength": 1 if non_empty else 0,
                "maxLength": MAX_VALUE,
            },
        }

    nested = {"type": "array", "minItems": 1, "items": component_ref(FILTER)}
    dialects = {
        "exact": compare(False),
        "prefix": compare(True),
        "suffix": compare(True),
        "all": nested,
        "any": nested,
        "not": component_ref(FILTER),
        "sql": {
            "type": "string",
            "minLength": 1,
            "maxLength": SQL_MAX_LENGTH,
            "description": "a CloudEvents SQL (CESQL v1.0.0) expression over the event's"
            " attributes, for example \"imseverity IN ('SEV1', 'SEV2') AND imservice LIKE"
            " 'payments%'\". The event passes only when it gives true without error (an"
            " evaluation error, a missing attribute included, is no match). Compiled at"
            f" registration: a parse error is a 400 naming the position; at most {SQL_MAX_DEPTH}"
            f" deep and {SQL_MAX_IN} values in one IN list",
        },
    }
    assert set(dialects) == set(DIALECTS)
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": dialects,
    }
