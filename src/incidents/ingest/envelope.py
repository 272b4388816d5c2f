"""The CloudEvents v1.0.2 envelope rules, checked on the raw JSON before any SDK sees it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from incidents.errors import FieldError, InvalidCloudEvent, pointer
from incidents.ingest.schemas import SchemaRegistry
from incidents.model.cloudevent import CloudEvent
from incidents.model.types import Extension

_INT32 = (-(2**31), 2**31 - 1)


def _python_checks(raw: Mapping[str, Any], prefix: str) -> list[FieldError]:
    """Rules JSON Schema cannot state (or states too loosely)."""
    errors: list[FieldError] = []
    for name, value in raw.items():
        if name in ("data", "data_base64"):
            continue
        if isinstance(value, float) and not value.is_integer():
            errors.append(
                FieldError(
                    prefix + pointer(name),
                    f"{value!r} is not an integer; attribute values are strings, "
                    "integers or booleans",
                )
            )
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


def validate_raw(registry: SchemaRegistry, raw: Any, prefix: str = "") -> list[FieldError]:
    """Every envelope problem of one event in JSON form, each with a JSON pointer."""
    if not isinstance(raw, dict):
        kind = "array" if isinstance(raw, list) else type(raw).__name__
        return [FieldError(prefix or "", f"a CloudEvent is a JSON object, not {kind}")]
    errors = registry.envelope_errors(raw, prefix)
    errors.extend(_python_checks(raw, prefix))
    seen: set[tuple[str, str]] = set()
    unique = []
    for e in errors:
        if (e.pointer, e.detail) not in seen:
            seen.add((e.pointer, e.detail))
            unique.append(e)
    return unique


def normalize(raw: Mapping[str, Any]) -> CloudEvent:
    """Build the value type from a raw event that passed ``validate_raw``."""
    attrs: dict[str, Any] = {}
    for name, value in raw.items():
        if name in ("data", "data_base64"):
            continue
        if isinstance(value, float):
            value = int(value)
        attrs[name] = value
    std = attrs.pop(Extension.DATA_CLASSIFICATION, None)
    if std is not None:
        attrs.setdefault(Extension.DATA_CLASS, std)
    return CloudEvent(attrs, raw.get("data"), raw.get("data_base64"))


def parse_event(registry: SchemaRegistry, raw: Any) -> CloudEvent:
    errors = validate_raw(registry, raw)
    if errors:
        raise InvalidCloudEvent(
            f"the event breaks {len(errors)} CloudEvents rule(s)", errors=errors
        )
    return normalize(raw)
