"""The CloudEvents v1.0.2 envelope rules, checked on the raw JSON before any SDK sees it."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime

from incidents.errors import FieldError, pointer
from incidents.model.cloudevent import AttributeValue, CloudEvent
from incidents.model.labels import DataClass, Visibility
from incidents.model.schemas import SchemaRegistry, json_kind
from incidents.model.types import Extension

_INT32 = (-(2**31), 2**31 - 1)
# CloudEvents core, Type System, String: no control characters (U+0000-U+001F, U+007F-U+009F),
# no Unicode noncharacters, no unpaired surrogates.
_NOT_IN_STRINGS = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
    + "]"
)


def without_nulls(raw: dict[str, object]) -> dict[str, object]:
    """JSON format 2.2: a ``null`` attribute is the same as an unset one."""
    if None not in raw.values():
        return raw
    return {name: value for name, value in raw.items() if value is not None}


def _string_problem(value: str) -> str | None:
    bad = _NOT_IN_STRINGS.search(value)
    if bad is None:
        return None
    return (
        f"contains U+{ord(bad.group()):04X}; attribute strings may not hold control "
        "characters (U+0000-U+001F, U+007F-U+009F), noncharacters or lone surrogates"
    )


def _python_checks(raw: Mapping[str, object], prefix: str) -> list[FieldError]:
    """Rules JSON Schema cannot state (or states too loosely)."""
    errors: list[FieldError] = []
    for name, value in raw.items():
        if name in ("data", "data_base64"):
            continue
        if isinstance(value, float):
            # JSON format 2.2: an Integer is written as its integer component only, so 10.0
            # and 1e3 are not integers (JSON Schema's "integer" would let them through).
            errors.append(
                FieldError(
                    prefix + pointer(name),
                    f"{value!r} is not an integer (integers are written without a fraction "
                    "or exponent); attribute values are strings, integers or booleans",
                )
            )
        elif isinstance(value, str) and (problem := _string_problem(value)) is not None:
            errors.append(FieldError(prefix + pointer(name), problem))
        if name in Extension.GATEWAY_OWNED:
            errors.append(
                FieldError(
                    prefix + pointer(name), f"{name!r} is set by the gateway, not by producers"
                )
            )
    b64 = raw.get("data_base64")
    if isinstance(b64, str):
        try:
            base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            errors.append(FieldError(prefix + "/data_base64", "is not valid base64"))
    own, std = raw.get(Extension.DATA_CLASS), raw.get(Extension.DATA_CLASSIFICATION)
    if own is not None and std is not None and own != std:
        errors.append(
            FieldError(
                prefix + pointer(Extension.DATA_CLASSIFICATION),
                f"{std!r} contradicts imdataclass {own!r}; send one, or the same value in both",
            )
        )
    return errors


_NAME = re.compile(r"[a-z0-9]{1,20}")
_SIMPLE_SOURCE = re.compile(
    r"/[A-Za-z0-9._~/-]*"
    r"|[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._~-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?"
    r"|urn:[A-Za-z0-9._~:-]+"
)
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_INCIDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CONTEXT = frozenset({"id", "source", "specversion", "type", "subject", "time", "data"})


def _valid_time(value: str) -> bool:
    if not _TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def clearly_valid(raw: Mapping[str, object]) -> bool:
    """A fast check that says True only for events every envelope rule accepts.

    It covers the shape nearly every producer sends; anything unusual (data_base64,
    dataschema, other content types, tags, uncommon source forms) answers False and is judged
    by the full JSON Schema, which also explains what is wrong.
    """
    for name in ("id", "source", "type"):
        value = raw.get(name)
        if type(value) is not str or not value:
            return False
    if any(
        type(v) is str and _NOT_IN_STRINGS.search(v) is not None
        for k, v in raw.items()
        if k != "data"
    ):
        return False
    source = raw["source"]
    if (
        raw.get("specversion") != "1.0"
        or not isinstance(source, str)
        or not _SIMPLE_SOURCE.fullmatch(source)
    ):
        return False
    for name, value in raw.items():
        if name in _CONTEXT:
            if name == "subject" and (type(value) is not str or not value):
                return False
            if name == "time" and (type(value) is not str or not _valid_time(value)):
                return False
            continue
        if name == "datacontenttype":
            if type(value) is not str or value != "application/json":
                return False
        elif name == Extension.INCIDENT_ID:
            if type(value) is not str or not _INCIDENT_ID.fullmatch(value):
                return False
        elif name in (Extension.ACTOR, Extension.CORRELATION_KEY):
            if type(value) is not str or not 0 < len(value) <= 512:
                return False
        elif name == Extension.DATA_CLASS:
            if type(value) is not str or DataClass.rank_of(value) is None:
                return False
        elif name == Extension.VISIBILITY:
            if type(value) is not str or Visibility.rank_of(value) is None:
                return False
        elif name in _NEEDS_FULL_CHECK or not _NAME.fullmatch(name):
            return False
        elif type(value) is int:
            if not _INT32[0] <= value <= _INT32[1]:
                return False
        elif type(value) not in (str, bool):
            return False
    event_type = raw["type"]
    if not isinstance(event_type, str):
        return False
    if (
        event_type.startswith("im.incident.")
        and event_type != "im.incident.declare"
        and Extension.INCIDENT_ID not in raw
    ):
        return False
    return not (event_type.startswith("im.alert.") and Extension.CORRELATION_KEY not in raw)


_NEEDS_FULL_CHECK = frozenset(
    {"data_base64", "dataschema", "imtags", "dataclassification", *Extension.GATEWAY_OWNED}
)


def validate_raw(registry: SchemaRegistry, raw: object, prefix: str = "") -> list[FieldError]:
    """Every envelope problem of one event in JSON form, each with a JSON pointer."""
    if not isinstance(raw, dict):
        return [FieldError(prefix or "", f"a CloudEvent is a JSON object, not {json_kind(raw)}")]
    raw = without_nulls(raw)
    if clearly_valid(raw):
        return []
    return full_check(registry, raw, prefix)


def full_check(
    registry: SchemaRegistry, raw: Mapping[str, object], prefix: str = ""
) -> list[FieldError]:
    """The JSON Schema and the rules it cannot state, without the fast path."""
    errors = registry.envelope_errors(raw, prefix)
    errors.extend(_python_checks(raw, prefix))
    seen: set[tuple[str, str]] = set()
    unique = []
    for e in errors:
        if (e.pointer, e.detail) not in seen:
            seen.add((e.pointer, e.detail))
            unique.append(e)
    return unique


def normalize(raw: object) -> CloudEvent:
    """Build the value type from a raw event that passed ``validate_raw``."""
    if not isinstance(raw, Mapping):
        raise TypeError("normalize takes an event that passed validate_raw")
    attrs: dict[str, AttributeValue] = {
        k: v
        for k, v in raw.items()
        if isinstance(v, str | int) and k not in ("data", "data_base64")  # bool is an int
    }
    std = attrs.pop(Extension.DATA_CLASSIFICATION, None)
    if std is not None:
        attrs.setdefault(Extension.DATA_CLASS, std)
    return CloudEvent(attrs, raw.get("data"), raw.get("data_base64"))
