"""The schema registry: every JSON Schema in ``schemas/``, compiled once at start-up."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias, cast

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

from incidents.errors import FieldError, pointer
from incidents.model.labels import DATA_CLASS_NAMES, DataClass

ENVELOPE_FILE = "cloudevent.json"
EVENTS_DIR = "events"
ADAPTERS_DIR = "adapters"  # the inbound adapters' payload schemas, one file per adapter


class SchemaLoadError(RuntimeError):
    """A schema file is missing, not JSON, or not a valid JSON Schema; names the file."""


@dataclass(frozen=True)
class MarkedField:
    """A field that a data schema marks with ``x-dataclass``."""

    path: tuple[str, ...]
    data_class: DataClass


_STANDARD_FORMATS = Draft202012Validator.FORMAT_CHECKER
_LEAP_SECOND = re.compile(r"(.{10}[Tt][0-9]{2}:[0-9]{2}:)60(.*)", re.DOTALL)


def is_date_time(value: object) -> bool:
    """RFC 3339 ``date-time``, leap seconds included (5.6: time-second may be 60): a second
    of 60 is valid where the time is 23:59 in UTC (5.7), e.g. 1990-12-31T15:59:60-08:00."""
    if not isinstance(value, str):
        return True  # formats judge strings only
    leap = _LEAP_SECOND.fullmatch(value)
    if leap is None:
        return bool(_STANDARD_FORMATS.conforms(value, "date-time"))
    one_second_earlier = f"{leap.group(1)}59{leap.group(2)}"
    if not _STANDARD_FORMATS.conforms(one_second_earlier, "date-time"):
        return False
    when = datetime.fromisoformat(one_second_earlier.upper().replace("Z", "+00:00"))
    utc = when.astimezone(UTC)
    return (utc.hour, utc.minute) == (23, 59)


def _format_checker() -> FormatChecker:
    """The standard format checks, with ``date-time`` taking leap seconds."""
    checker = FormatChecker(formats=())
    checker.checkers = {**_STANDARD_FORMATS.checkers, "date-time": (is_date_time, ())}
    return checker


FORMATS = _format_checker()


@functools.lru_cache(maxsize=256)
def check_schema_text(text: str) -> None:
    """Raise SchemaError unless ``text``, a JSON object, is a valid Draft 2020-12 schema.

    A text that passed once is not checked again in this process: the meta-schema is fixed,
    so the answer depends on the text alone, and the check is most of what loading the schemas
    costs (every app, every worker context). A text that fails is checked each time."""
    Draft202012Validator.check_schema(json.loads(text))


def _compile(path: Path) -> tuple[Validator, dict[str, object]]:
    try:
        text = path.read_text(encoding="utf-8")
        schema = json.loads(text)
    except FileNotFoundError:
        raise SchemaLoadError(f"schema file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaLoadError(f"schema file {path} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SchemaLoadError(
            f"schema file {path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(schema, dict):
        raise SchemaLoadError(f"schema file {path} must hold a JSON object")
    try:
        check_schema_text(text)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SchemaLoadError(
            f"schema file {path} is not a valid JSON Schema at {where}: {exc.message}"
        ) from exc
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    return validator, schema


def _marked_fields(
    source: Path, schema: Mapping[str, object], path: tuple[str, ...] = ()
) -> Iterator[MarkedField]:
    mark = schema.get("x-dataclass")
    if isinstance(mark, str) and path:
        if DataClass.rank_of(mark) is None:
            raise SchemaLoadError(
                f"schema file {source} marks /{'/'.join(path)} with unknown "
                f"x-dataclass {mark!r} (expected one of {', '.join(DATA_CLASS_NAMES)})"
            )
        yield MarkedField(path, DataClass(mark))
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for name, sub in props.items():
            if isinstance(sub, Mapping):
                yield from _marked_fields(source, sub, (*path, name))


# A parsed JSON value, as jsonschema takes it.
_JSON: TypeAlias = "str | int | float | bool | Mapping[str, _JSON] | Sequence[_JSON] | None"
_JSON_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number"}


def json_kind(value: object) -> str:
    """The JSON name of a parsed value's type (``null``, ``object``...), for messages."""
    if value is None:
        return "null"
    return _JSON_KINDS.get(type(value), "number")


def as_json(value: object, limit: int = 60) -> str:
    """A value as it was written in JSON (``null``, ``true``), cut short for a message."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(error: ValidationError) -> tuple[str, str]:
    """A JSON pointer and a readable message for one validation error."""
    where = list(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return pointer(*where, missing), f"{missing!r} is required"
    if error.validator == "propertyNames" or "propertyNames" in error.schema_path:
        bad = error.instance
        return pointer(*where, str(bad)), (
            f"attribute name {bad!r} is not allowed: names are 1 to 20 characters of [a-z0-9]"
        )
    if error.validator == "format":
        return pointer(*where), f"{error.instance!r} is not a valid {error.validator_value}"
    if error.validator == "const":
        return pointer(
            *where
        ), f"{as_json(error.instance)} must be {as_json(error.validator_value)}"
    if error.validator == "type":
        wanted = error.validator_value
        names = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        return pointer(*where), f"{as_json(error.instance)} is not of type {names}"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        allowed = ", ".join(as_json(v) for v in error.validator_value)
        return pointer(*where), f"{as_json(error.instance)} is not one of {allowed}"
    if error.validator == "minLength" and error.validator_value == 1:
        return pointer(*where), "must not be empty"
    if error.validator == "not" and isinstance(error.instance, dict):
        return pointer(*where, "data_base64"), "an event cannot carry both data and data_base64"
    alternatives = error.validator_value
    if (
        error.validator == "anyOf"
        and isinstance(alternatives, list)
        and all(isinstance(alt, dict) and set(alt) == {"required"} for alt in alternatives)
    ):
        names = " or ".join(repr(n) for alt in alternatives for n in alt["required"])
        return pointer(*where), f"at least one of {names} is required"
    return pointer(*where), error.message


def errors_of(validator: Validator, instance: object, prefix: str = "") -> list[FieldError]:
    parsed = cast(_JSON, instance)  # what json.loads or orjson.loads gave
    found = sorted(validator.iter_errors(parsed), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for error in found:
        where, detail = _message(error)
        out.append(FieldError(prefix + where, detail))
    return out


# Keywords that only annotate: they never make an instance invalid.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples"}
)
_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "integer": lambda v: type(v) is int,  # 1.0 is an integer too: left to jsonschema
    "number": lambda v: type(v) in (int, float),
}
Check: TypeAlias = Callable[[object], bool]


def surely_valid(schema: object) -> Check | None:
    """A fast check for a schema written with the common keywords: it answers True only for
    instances the schema accepts (False: let jsonschema judge, and explain). None when the
    schema uses a keyword this does not know."""
    if schema is True:
        return lambda v: True
    if not isinstance(schema, Mapping):
        return None
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS or keyword.startswith("x-"):
            continue
        check = _keyword(keyword, value, schema)
        if check is None:
            return None
        checks.append(check)
    return lambda v: all(check(v) for check in checks)


def _keyword(keyword: str, value: object, schema: Mapping[str, object]) -> Check | None:
    """One keyword's check, applied as JSON Schema applies it (only to its kind of value)."""
    if keyword == "type":
        names = value if isinstance(value, list) else [value]
        if not all(isinstance(n, str) and n in _TYPES for n in names):
            return None
        tests = [_TYPES[str(n)] for n in names]
        return lambda v: any(test(v) for test in tests)
    if keyword in ("minLength", "maxLength", "minItems", "maxItems", "minProperties"):
        if type(value) is not int:
            return None
        kind = {"minLength": str, "maxLength": str, "minProperties": dict}.get(keyword, list)
        bound = value
        if keyword.startswith("min"):
            return lambda v: type(v) is not kind or len(v) >= bound
        return lambda v: type(v) is not kind or len(v) <= bound
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if type(value) not in (int, float):
            return None
        limit = cast(float, value)
        compare: Callable[[float], bool] = {
            "minimum": lambda n: n >= limit,
            "maximum": lambda n: n <= limit,
            "exclusiveMinimum": lambda n: n > limit,
            "exclusiveMaximum": lambda n: n < limit,
        }[keyword]
        return lambda v: type(v) not in (int, float) or compare(cast(float, v))
    if keyword == "pattern":
        if not isinstance(value, str):
            return None
        regex = re.compile(value)
        return lambda v: type(v) is not str or regex.search(v) is not None
    if keyword == "format":
        if not isinstance(value, str):
            return None
        fmt = value
        return lambda v: FORMATS.conforms(v, fmt)
    if keyword == "enum":
        if not isinstance(value, list) or not all(type(e) is str for e in value):
            return None
        allowed = frozenset(value)
        return lambda v: type(v) is str and v in allowed
    if keyword == "required":
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            return None
        needed = tuple(value)
        return lambda v: type(v) is not dict or all(n in v for n in needed)
    if keyword == "properties":
        if not isinstance(value, Mapping):
            return None
        subs = {name: surely_valid(sub) for name, sub in value.items()}
        if any(sub is None for sub in subs.values()):
            return None
        known = cast(dict[str, Check], subs)
        return lambda v: (
            type(v) is not dict or all(known[k](item) for k, item in v.items() if k in known)
        )
    if keyword == "additionalProperties":
        if "patternProperties" in schema:
            return None
        props = schema.get("properties", {})
        declared = frozenset(props) if isinstance(props, Mapping) else frozenset()
        if value is False:
            return lambda v: type(v) is not dict or declared.issuperset(v)
        rest = surely_valid(value)
        if rest is None:
            return None
        return lambda v: (
            type(v) is not dict or all(rest(item) for k, item in v.items() if k not in declared)
        )
    if keyword == "items":
        each = surely_valid(value)
        if each is None:
            return None
        return lambda v: type(v) is not list or all(each(item) for item in v)
    if keyword == "anyOf":
        if not isinstance(value, list) or not value:
            return None
        options = [surely_valid(option) for option in value]
        if any(option is None for option in options):
            return None
        branches = cast(list[Check], options)
        return lambda v: any(branch(v) for branch in branches)
    return None


class SchemaRegistry:
    """Compiled validators for the envelope and for each event type's data."""

    def __init__(
        self,
        envelope: Validator,
        data: Mapping[str, Validator],
        marked: Mapping[str, tuple[MarkedField, ...]],
        raw: Mapping[str, Mapping[str, object]],
    ) -> None:
        self.envelope = envelope
        self._data = dict(data)
        # Most valid data passes these without jsonschema; anything else is judged by it.
        self._surely_valid = {
            name: check
            for name, schema in raw.items()
            if name in self._data and (check := surely_valid(schema)) is not None
        }
        self._marked = dict(marked)
        self.raw = dict(raw)

    @classmethod
    def load(cls, directory: Path) -> SchemaRegistry:
        if not directory.is_dir():
            raise SchemaLoadError(f"schemas directory {directory} does not exist")
        envelope, env_raw = _compile(directory / ENVELOPE_FILE)
        data: dict[str, Validator] = {}
        marked: dict[str, tuple[MarkedField, ...]] = {}
        raw: dict[str, Mapping[str, object]] = {"cloudevent": env_raw}
        for path in sorted((directory / EVENTS_DIR).glob("*.json")):
            validator, schema = _compile(path)
            event_type = schema.get("x-event-type", path.stem)
            if event_type != path.stem:
                raise SchemaLoadError(
                    f"schema file {path} declares x-event-type {event_type!r}; "
                    f"the file must be named {event_type}.json"
                )
            fields = tuple(_marked_fields(path, schema))
            data[event_type] = validator
            marked[event_type] = fields
            raw[event_type] = schema
        # Other schemas (policies, adapters) are compiled by their owners through ``compile``.
        return cls(envelope, data, marked, raw)

    @staticmethod
    def compile(path: Path) -> Validator:
        return _compile(path)[0]

    def knows(self, event_type: str) -> bool:
        return event_type in self._data

    @property
    def event_types(self) -> list[str]:
        return sorted(self._data)

    def envelope_errors(self, raw: object, prefix: str = "") -> list[FieldError]:
        return errors_of(self.envelope, raw, prefix)

    def data_errors(self, event_type: str, data: object, prefix: str = "/data") -> list[FieldError]:
        validator = self._data.get(event_type)
        if validator is None:
            return []
        fast = self._surely_valid.get(event_type)
        if fast is not None and fast(data):
            return []
        return errors_of(validator, data, prefix)

    def marked_fields(self, event_type: str) -> tuple[MarkedField, ...]:
        return self._marked.get(event_type, ())
