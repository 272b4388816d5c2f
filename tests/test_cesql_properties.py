"""Properties of the CESQL engine over generated input: the parser only ever raises its own
ParseError, evaluation only ever returns a value and errors, LIKE agrees with a reference
matcher and stays fast, and the string functions follow the spec's text at any index."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.cesql import Expression, Limits, ParseError, Result, compile_expression
from incidents.model.sql_filter import SQL_LIMITS, compile_sql

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
TOKENS = (
    "(", ")", ",", "AND", "or", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "false",
    "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "a", "B", "ABS", "LEFT",
    "SUBSTRING", "CONCAT_WS", "INT", "bool", "0", "1", "2147483647", "2147483648", "-2147483648",
    "99999999999999999999999", "'x'", "'%a_'", '"y"', "'", '"', "\\", "''", "\u00e9", "\x00",
    " ", "\t", "\u3000", "_", "f1", "my_ext",
)  # fmt: skip
soups = st.lists(st.sampled_from(TOKENS), max_size=40)
texts = st.text(max_size=80) | soups.map(" ".join) | soups.map("".join)


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


names = st.sampled_from(["a", "b", "c", "missing"])
integers = st.integers(INT_MIN, INT_MAX).map(lambda i: f"({i})" if i < 0 else str(i))
leaves = st.one_of(
    integers,
    st.sampled_from(["-2147483648", "2147483647", "0", "TRUE", "FALSE"]),
    st.text(max_size=8).filter(lambda t: "\\" not in t).map(quoted),
    names,
    names.map(lambda n: "EXISTS " + n),
)
OPERATORS = ("+", "-", "*", "/", "%", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "OR", "XOR")
FUNCTIONS = (
    "ABS", "LENGTH", "CONCAT", "CONCAT_WS", "LOWER", "UPPER", "TRIM", "LEFT", "RIGHT",
    "SUBSTRING", "INT", "BOOL", "STRING", "IS_INT", "IS_BOOL", "IS_STRING", "NOPE",
)  # fmt: skip


def _composite(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    patterns = st.text("ab%_\\", max_size=8).map(quoted)
    return st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(" ".join).map("({})".format),
        inner.map(lambda e: f"(NOT {e})"),
        inner.map(lambda e: f"(-{e})"),
        st.tuples(inner, patterns).map(" LIKE ".join).map("({})".format),
        st.tuples(inner, st.lists(inner, min_size=1, max_size=4)).map(
            lambda t: f"({t[0]} NOT IN ({', '.join(t[1])}))"
        ),
        st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=4)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    )  # fmt: skip


expressions = st.recursive(leaves, _composite, max_leaves=12)
attribute_values = st.one_of(
    st.text(max_size=10),
    st.integers(),
    st.booleans(),
    st.sampled_from(["true", "FALSE", "-2147483648", "2147483648", "+5", " 1", "\u0661", "\x00"]),
)
events = st.dictionaries(st.sampled_from(["a", "b", "c", "id"]), attribute_values)


@settings(max_examples=1500, deadline=None)
@given(text=texts)
def test_any_text_compiles_or_raises_a_parse_error_only(text: str) -> None:
    """Random strings and token soups give an expression or a ParseError, nothing else."""
    for limits in (Limits(), SQL_LIMITS):
        try:
            compile_expression(text, limits)
        except ParseError as exc:
            assert 1 <= exc.position <= max(len(text), limits.max_length or 0) + 1
    compiled, why = compile_sql(text)
    assert (compiled is None) != (why is None)


@settings(max_examples=1500, deadline=None)
@given(text=expressions, event=events)
def test_evaluation_returns_a_value_and_errors_and_never_raises(
    text: str, event: dict[str, object]
) -> None:
    """Any expression evaluated against any event gives a CESQL value and at most one error."""
    try:
        expression = compile_expression(text)
    except ParseError:
        return
    result = expression.evaluate(event)
    assert isinstance(result, Result) and len(result.errors) <= 1
    assert type(result.value) in (bool, int, str)
    assert type(result.value) is not int or INT_MIN <= result.value <= INT_MAX
    assert expression.matches(event) is (result.value is True and not result.errors)


def like_reference(pattern: str, text: str) -> bool:
    """Section 3.4.3 as a regular expression, for short texts only."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and pattern[i + 1 : i + 2] in ("%", "_") and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), text, re.DOTALL) is not None


like_text = st.text("ab%_\\\u00e9\n", max_size=10)


@settings(max_examples=1500, deadline=None)
@given(pattern=like_text.filter(lambda p: not p.endswith("\\")), text=like_text)
def test_like_agrees_with_the_reference_matcher(pattern: str, text: str) -> None:
    """LIKE matches exactly what the spec's wildcards describe, escapes included (a pattern
    ending in a backslash would escape the closing quote)."""
    expression = Expression("x LIKE " + quoted(pattern))
    assert expression.evaluate({"x": text}).value is like_reference(pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [
        "%a%a%a%a%a%a%a%a%b",
        "%" + "a%" * 200 + "b",
        "%a_a_a_a_a_a_a_b%",
        "_%_%_%_%_%_%_%_%_%_%b",
        "%" + "_" * 100 + "b",
        "a%a%a%a%a%a%a%a%a%a%a%a%ab",
    ],
)
def test_like_is_not_exponential_on_long_values(pattern: str) -> None:
    """Patterns that make a backtracking matcher explode stay fast on a 100,000-character
    value."""
    expression = Expression("x LIKE " + quoted(pattern))
    started = time.perf_counter()
    assert expression.evaluate({"x": "a" * 100_000}).value is False
    assert time.perf_counter() - started < 1.0


def substring_reference(x: str, pos: int, length: int | None) -> tuple[str, bool]:
    """SUBSTRING as section 3.5.1 words it: the value, and whether it is an error."""
    if pos > len(x) or pos < -len(x) or (length is not None and length < 0):
        return "", True
    if pos == 0:
        return "", False
    start = pos - 1 if pos > 0 else len(x) + pos
    return (x[start:] if length is None else x[start : start + length]), False


extreme = st.sampled_from([INT_MIN, INT_MIN + 1, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, INT_MAX])
indices = st.integers(INT_MIN, INT_MAX) | extreme


@settings(max_examples=800, deadline=None)
@given(x=st.text(max_size=6), y=indices, z=indices | st.none())
def test_left_right_and_substring_follow_the_spec_at_any_index(
    x: str, y: int, z: int | None
) -> None:
    """LEFT and RIGHT give x when y >= LENGTH(x) and x with an error when y < 0; SUBSTRING
    gives the empty string with an error outside the string or for a negative length."""
    env = {"x": x, "y": y, "z": z if z is not None else 0}
    left, right = Expression("LEFT(x, y)").evaluate(env), Expression("RIGHT(x, y)").evaluate(env)
    if y < 0:
        assert (left.value, right.value) == (x, x) and left.errors and right.errors
    else:
        assert (left.value, right.value) == (x[:y], x[max(len(x) - y, 0) :] if y else "")
        assert not left.errors and not right.errors
    text = "SUBSTRING(x, y)" if z is None else "SUBSTRING(x, y, z)"
    result = Expression(text).evaluate(env)
    assert (result.value, bool(result.errors)) == substring_reference(x, y, z)


@settings(max_examples=800, deadline=None)
@given(digits=st.text("0123456789", min_size=1, max_size=40), sign=st.sampled_from(["", "+", "-"]))
def test_int_of_any_digit_string_is_the_number_or_a_cast_error(digits: str, sign: str) -> None:
    """INT of a string of digits, however long, is its value within 32 bits, else a cast
    error; never an exception."""
    result = Expression("INT(x)").evaluate({"x": sign + digits})
    number = int(sign + digits)
    if INT_MIN <= number <= INT_MAX:
        assert (result.value, result.errors) == (number, ())
    else:
        assert result.value == 0 and [e.kind for e in result.errors] == ["cast"]


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.text(max_size=5), min_size=0, max_size=1200), sep=st.text(max_size=3))
def test_concat_ws_takes_any_number_of_arguments(parts: list[str], sep: str) -> None:
    """CONCAT_WS joins any number of arguments with the separator between them."""
    env = {"s": sep, **{f"a{i}": p for i, p in enumerate(parts)}}
    text = "CONCAT_WS(s" + "".join(f", a{i}" for i in range(len(parts))) + ")"
    assert Expression(text).evaluate(env).value == sep.join(parts)


@settings(max_examples=800, deadline=None)
@given(value=st.text().filter(lambda t: "\\" not in t))
def test_any_unicode_string_literal_reads_back_as_written(value: str) -> None:
    """A string literal holding any characters (NUL, controls, non-ASCII; quotes doubled)
    equals the same attribute value and has its length."""
    expression = Expression(f"x = {quoted(value)} AND LENGTH({quoted(value)}) = {len(value)}")
    assert expression.evaluate({"x": value}) == Result(True)


@settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=1, max_size=5).filter(lambda t: not t.isascii()))
def test_a_non_ascii_name_is_a_parse_error(name: str) -> None:
    """Attribute and function names are ASCII: any other character is a parse error."""
    with pytest.raises(ParseError):
        compile_expression(f"{name} = 'x'")
    with pytest.raises(ParseError):
        compile_expression(f"EXISTS {name}")


def test_integer_literals_at_and_beyond_the_32_bit_edge() -> None:
    """-2147483648 is a literal; one past either end, or a number of thousands of digits,
    is a parse error; negating the smallest value is a math error."""
    assert Expression("-2147483648").evaluate({}) == Result(INT_MIN)
    assert Expression("2147483647").evaluate({}) == Result(INT_MAX)
    for text in ("-2147483649", "2147483648", "- 2147483648", "9" * 5000):
        with pytest.raises(ParseError, match="outside the 32-bit range"):
            compile_expression(text)
    assert Expression("-" + "0" * 5000 + "1").evaluate({}) == Result(-1)
    (error,) = Expression("-(-2147483648)").evaluate({}).errors
    assert error.kind == "math"
