"""Integer operators (sections 3.4.1 and 3.4.2): unary ``-``, ``+ - * / %`` and ``< <= > >=``,
over 32-bit Integers. Operands are cast to Integer; a result outside the 32-bit range is a
math error (as ``ABS(-2147483648)`` is in the spec), as is a division by zero; ``/``
truncates towards 0 and ``%`` has the sign of its left operand."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from incidents.cesql.sql_errors import MathError, Value
from incidents.cesql.values import INT_MAX, INT_MIN, to_int

Attributes = Mapping[str, object]
Eval = Callable[[Attributes], Value]


def negate(operand: Eval) -> Eval:
    def negate(env: Attributes) -> Value:
        v = operand(env)
        if type(v) is not int:
            v = to_int(v)
        if v == INT_MIN:
            raise MathError("-(-2147483648) is outside the 32-bit range")
        return -v

    return negate


def _checked(result: int, what: str) -> int:
    if INT_MIN <= result <= INT_MAX:
        return result
    raise MathError(f"{what} = {result} is outside the 32-bit range")


def _ints(left: Eval, right: Eval, env: Attributes) -> tuple[int, int]:
    x, y = left(env), right(env)
    return (x if type(x) is int else to_int(x)), (y if type(y) is int else to_int(y))


def _add(left: Eval, right: Eval) -> Eval:
    def add(env: Attributes) -> Value:
        x, y = _ints(left, right, env)
        r = x + y
        return r if INT_MIN <= r <= INT_MAX else _checked(r, f"{x} + {y}")

    return add


def _subtract(left: Eval, right: Eval) -> Eval:
    def subtract(env: Attributes) -> Value:
        x, y = _ints(left, right, env)
        r = x - y
        return r if INT_MIN <= r <= INT_MAX else _checked(r, f"{x} - {y}")

    return subtract


def _multiply(left: Eval, right: Eval) -> Eval:
    def multiply(env: Attributes) -> Value:
        x, y = _ints(left, right, env)
        r = x * y
        return r if INT_MIN <= r <= INT_MAX else _checked(r, f"{x} * {y}")

    return multiply


def _truncated(x: int, y: int) -> int:
    """``x / y`` rounded towards 0 (Python's ``//`` floors)."""
    q = abs(x) // abs(y)
    return -q if (x < 0) != (y < 0) else q


def _divide(left: Eval, right: Eval) -> Eval:
    def divide(env: Attributes) -> Value:
        x, y = _ints(left, right, env)
        if y == 0:
            raise MathError(f"{x} / 0: division by zero")
        return _checked(_truncated(x, y), f"{x} / {y}")

    return divide


def _modulo(left: Eval, right: Eval) -> Eval:
    def modulo(env: Attributes) -> Value:
        x, y = _ints(left, right, env)
        if y == 0:
            raise MathError(f"{x} % 0: division by zero")
        r = abs(x) % abs(y)
        return -r if x < 0 else r  # the sign of x

    return modulo


ARITHMETIC = {"+": _add, "-": _subtract, "*": _multiply, "/": _divide, "%": _modulo}


def _order(test: Callable[[int, int], bool]) -> Callable[[Eval, Eval], Eval]:
    def build(left: Eval, right: Eval) -> Eval:
        def compare(env: Attributes) -> Value:
            x, y = _ints(left, right, env)
            return test(x, y)

        return compare

    return build


ORDER = {
    "<": _order(lambda x, y: x < y),
    "<=": _order(lambda x, y: x <= y),
    ">": _order(lambda x, y: x > y),
    ">=": _order(lambda x, y: x >= y),
}
