"""CESQL's types (section 3.1), their zero values, the casts between them (section 3.7) and
how an event's attribute values become CESQL values (section 3.2).

A value is a Python ``bool`` (Boolean), ``int`` within 32 bits (Integer) or ``str``
(String). ``bool`` is a subclass of ``int`` in Python, so types are told apart with
``type(v) is ...``, never ``isinstance``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import cast

from incidents.cesql.sql_errors import CastError, Value

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
_INT_TEXT = re.compile(r"([+-]?)0*([0-9]{1,10})")  # ASCII digits only, unlike int()


class Type(StrEnum):
    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"


ZERO: dict[Type | None, Value] = {
    Type.BOOLEAN: False,
    Type.INTEGER: 0,
    Type.STRING: "",
    None: False,  # a type the engine cannot tell (an attribute): Boolean (section 3.2)
}
PYTHON_TYPE: dict[Type, type] = {Type.BOOLEAN: bool, Type.INTEGER: int, Type.STRING: str}


def type_of(value: Value) -> Type:
    t = type(value)
    return Type.BOOLEAN if t is bool else Type.INTEGER if t is int else Type.STRING


def describe(value: Value) -> str:
    """The value with its type, for messages: ``String 'abc'``, ``Integer 5``."""
    shown = to_str(value) if type(value) is not str else repr(value)
    return f"{type_of(value)} {shown}"


def to_int(value: Value) -> int:
    if type(value) is int:
        return value
    if type(value) is bool:
        return 1 if value else 0
    text = cast(str, value)
    found = _INT_TEXT.fullmatch(text)
    if found is not None:
        number = int(found.group(2))
        number = -number if found.group(1) == "-" else number
        if INT_MIN <= number <= INT_MAX:
            return number
        raise CastError(f"cannot cast String {text!r} to Integer: out of the 32-bit range")
    raise CastError(f"cannot cast String {text!r} to Integer")


def to_bool(value: Value) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int:
        return value != 0
    lowered = cast(str, value).lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise CastError(f"cannot cast String {value!r} to Boolean")


def to_str(value: Value) -> str:
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


CAST: dict[type, Callable[[Value], Value]] = {bool: to_bool, int: to_int, str: to_str}
CAST_TO: dict[Type, Callable[[Value], Value]] = {
    Type.BOOLEAN: to_bool,
    Type.INTEGER: to_int,
    Type.STRING: to_str,
}


def castable(value: Value, target: Type) -> bool:
    try:
        CAST_TO[target](value)
    except CastError:
        return False
    return True


def attribute_value(raw: object) -> Value:
    """An attribute's value as CESQL sees it: strings, booleans and 32-bit integers as they
    are; anything else (a larger integer, a timestamp object) as a String (section 3.2)."""
    if type(raw) is str or type(raw) is bool:
        return raw
    if type(raw) is int and INT_MIN <= raw <= INT_MAX:
        return raw
    return str(raw)
