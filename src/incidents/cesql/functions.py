"""The built-in functions (section 3.5), looked up by upper-case name and arity.

The spec's string and math functions, the casting functions its TCK uses (``INT``, ``BOOL``,
``STRING``) and the type tests ``IS_INT``, ``IS_BOOL`` and ``IS_STRING``: true when the
argument is, or casts without error to, that type (every value has a String form, so
``IS_STRING`` is always true). A function's failure carries its own value (``LEFT('abc',
-1)`` is ``'abc'``), which ``compiler`` keeps when the call is the whole expression.

A String a function builds holds at most ``MAX_STRING`` characters (CloudEvents asks
intermediaries to forward events up to 64 KB); a longer one is a FunctionEvaluationError
with the empty string, and ``CONCAT`` refuses before it builds anything. Without that bound,
an expression of a few thousand characters repeating one large attribute (``CONCAT(a, a,
..., a)``, ``CONCAT(UPPER(a), UPPER(a), ...)``) would allocate gigabytes per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from incidents.cesql.sql_errors import FunctionEvaluationError, MathError, Value
from incidents.cesql.values import INT_MAX, INT_MIN, Type, castable, to_bool, to_int, to_str

# Unicode White_Space (PropList.txt): what TRIM removes. str.strip() would also remove the
# control characters U+001C..U+001F, which the spec says TRIM keeps.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[Type | None, ...]  # None: any type, not cast
    returns: Type
    run: Callable[..., Value]
    rest: Type | None = None  # the type of the variadic arguments after ``params``
    variadic: bool = False

    def param(self, index: int) -> Type | None:
        return self.params[index] if index < len(self.params) else self.rest


def _abs(x: int) -> int:
    if x == INT_MIN:
        raise MathError("ABS(-2147483648) overflows the 32-bit range", value=INT_MAX)
    return abs(x)


def _left(x: str, y: int) -> str:
    if y < 0:
        raise FunctionEvaluationError(f"LEFT of a negative length ({y})", value=x)
    return x[:y]


def _right(x: str, y: int) -> str:
    if y < 0:
        raise FunctionEvaluationError(f"RIGHT of a negative length ({y})", value=x)
    return x[max(len(x) - y, 0) :] if y else ""  # a y past LENGTH(x) would index from the end


def _start(x: str, pos: int) -> int:
    """The index ``SUBSTRING`` starts at (``pos`` from 1, or from the end if negative)."""
    if pos > len(x) or pos < -len(x):
        raise FunctionEvaluationError(
            f"SUBSTRING position {pos} is outside a string of length {len(x)}", value=""
        )
    return pos - 1 if pos > 0 else len(x) + pos


def _substring(x: str, pos: int) -> str:
    start = _start(x, pos)
    return "" if pos == 0 else x[start:]


def _substring_len(x: str, pos: int, length: int) -> str:
    start = _start(x, pos)
    if length < 0:
        raise FunctionEvaluationError(f"SUBSTRING of a negative length ({length})", value="")
    return "" if pos == 0 else x[start : start + length]


MAX_STRING = 65_536


def too_long(name: str, length: int) -> FunctionEvaluationError:
    return FunctionEvaluationError(
        f"{name} would build a String of {length} characters; at most {MAX_STRING}", value=""
    )


def _concat(*parts: str) -> str:
    length = sum(map(len, parts))
    if length > MAX_STRING:
        raise too_long("CONCAT", length)
    return "".join(parts)


def _concat_ws(sep: str, *parts: str) -> str:
    length = sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0)
    if length > MAX_STRING:
        raise too_long("CONCAT_WS", length)
    return sep.join(parts)


STR, INT, BOOL = Type.STRING, Type.INTEGER, Type.BOOLEAN
BUILTINS = (
    Function("ABS", (INT,), INT, _abs),
    Function("LENGTH", (STR,), INT, len),
    Function("CONCAT", (), STR, _concat, rest=STR, variadic=True),
    Function("CONCAT_WS", (STR,), STR, _concat_ws, rest=STR, variadic=True),
    Function("LOWER", (STR,), STR, str.lower),
    Function("UPPER", (STR,), STR, str.upper),
    Function("TRIM", (STR,), STR, lambda x: x.strip(WHITESPACE)),
    Function("LEFT", (STR, INT), STR, _left),
    Function("RIGHT", (STR, INT), STR, _right),
    Function("SUBSTRING", (STR, INT), STR, _substring),
    Function("SUBSTRING", (STR, INT, INT), STR, _substring_len),
    Function("INT", (None,), INT, to_int),
    Function("BOOL", (None,), BOOL, to_bool),
    Function("STRING", (None,), STR, to_str),
    Function("IS_INT", (None,), BOOL, lambda x: castable(x, Type.INTEGER)),
    Function("IS_BOOL", (None,), BOOL, lambda x: castable(x, Type.BOOLEAN)),
    Function("IS_STRING", (None,), BOOL, lambda x: castable(x, Type.STRING)),
)


def resolve(name: str, arity: int) -> Function | None:
    """The function ``name`` taking ``arity`` arguments: one of that exact arity, else the
    variadic one if ``arity`` covers its fixed arguments (section 3.5)."""
    variadic = None
    for fn in BUILTINS:
        if fn.name != name:
            continue
        if not fn.variadic and len(fn.params) == arity:
            return fn
        if fn.variadic and len(fn.params) <= arity:
            variadic = fn
    return variadic
