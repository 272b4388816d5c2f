"""The CESQL engine beyond the TCK: parse errors and their positions, limits, precedence,
32-bit arithmetic, literals, casts, LIKE, functions and attribute values."""

from __future__ import annotations

import gc
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from incidents.cesql import (
    EvaluationError,
    Limits,
    ParseError,
    Result,
    Type,
    Value,
    compile_expression,
)

EVENT = {"specversion": "1.0", "id": "e1", "source": "/s", "type": "t"}


def run(text: str, **attributes: object) -> Result:
    return compile_expression(text).evaluate({**EVENT, **attributes})


def value(text: str, **attributes: object) -> Value:
    result = run(text, **attributes)
    assert result.errors == (), result.errors
    return result.value


def error_kind(text: str, **attributes: object) -> str:
    (error,) = run(text, **attributes).errors
    return error.kind


def parse_error(text: str, limits: Limits | None = None) -> ParseError:
    with pytest.raises(ParseError) as caught:
        compile_expression(text, limits or Limits())
    return caught.value


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("ABC(", 5, "expected an expression, found the end of the expression"),
        ("ABC(1", 6, "expected ',' or ')' to close the arguments of ABC, found the end"),
        ("x LIKE 123", 8, "expected a string literal after LIKE"),
        ("a = (1 + 2", 11, "expected ')' to close the '(' at position 5"),
        ("a = 'open", 5, "unterminated string literal"),
        ("a # b", 3, "unexpected character '#'"),
        ("a b", 3, "expected an operator or the end of the expression, found the name 'b'"),
        ("a IN ()", 7, "expected an expression, found ')'"),
        ("a IN 1", 6, "expected '(' and a list of values after IN"),
        ("EXISTS 1", 8, "expected an attribute name after EXISTS"),
        ("my_ext = 1", 1, "'my_ext' is not an attribute name"),
        ("f1(2)", 1, "'f1' is not a function name"),
        ("1 = 2147483648", 5, "outside the 32-bit range"),
        ("+ 1", 1, "expected an expression, found '+'"),
        ("", 1, "expected an expression, found the end of the expression"),
    ],
)
def test_parse_errors_name_the_position_and_what_was_expected(
    text: str, position: int, expected: str
) -> None:
    """A parse error says where (characters from 1) and what was expected instead."""
    error = parse_error(text)
    assert error.position == position
    assert expected in str(error) and f"(at position {position})" in str(error)


def test_limits_bound_length_depth_and_in_lists() -> None:
    """Too long, too deep (parentheses, NOT, or a run of +) and too many IN values are
    parse errors naming the limit; at the limit the expression compiles."""
    limits = Limits(max_length=50, max_depth=8, max_in=3)
    assert "at most 50" in str(parse_error("a = '" + "x" * 50 + "'", limits))
    compile_expression("(((((((a)))))))", limits)
    assert "more than 8 deep" in str(parse_error("((((((((((a))))))))))", limits))
    assert "more than 8 deep" in str(parse_error("NOT " * 9 + "a", limits))
    assert "more than 8 deep" in str(parse_error("1" + " + 1" * 8, limits))
    compile_expression("a IN (1, 2, 3)", limits)
    assert "at most 3 values" in str(parse_error("a IN (1, 2, 3, 4)", limits))
    # a run of one logic operator is one node, however long
    compile_expression(" OR ".join(f"a = {i}" for i in range(30)), Limits(max_depth=3))


def test_default_limits_stop_deep_nesting_before_the_interpreter_does() -> None:
    """Thousands of parentheses are a parse error, not a RecursionError."""
    assert "deep" in str(parse_error("(" * 5000 + "a" + ")" * 5000))
    assert "deep" in str(parse_error("-" * 5000 + "1"))


def test_a_sign_joins_the_digits_only_where_an_operand_is_expected() -> None:
    """-2147483648 is a literal; 4-1 and 4 -1 subtract; --10 is 10; - 2147483648 is out of
    range (unary minus of a literal too large)."""
    assert value("-2147483648") == -2147483648
    assert value("4-1") == 3 and value("4 -1") == 3 and value("4+1") == 5
    assert value("--10") == 10 and value("- 5") == -5
    assert "32-bit" in str(parse_error("- 2147483648"))


def test_logic_operators_apply_left_to_right() -> None:
    """AND, OR and XOR share one precedence and apply left to right (section 3.6)."""
    assert value("TRUE OR FALSE AND FALSE") is False  # (TRUE OR FALSE) AND FALSE
    assert value("FALSE AND FALSE OR TRUE") is True  # (FALSE AND FALSE) OR TRUE
    assert value("TRUE XOR TRUE XOR TRUE") is True


def test_not_and_minus_bind_tighter_than_comparisons() -> None:
    """NOT a = b is (NOT a) = b; - a * b is (-a) * b; LIKE binds tighter than +."""
    assert value("NOT TRUE = FALSE") is True
    assert value("-2 * 3") == -6
    assert value("1 + 'ab' LIKE 'a%'") == 2  # 1 + (TRUE)


def test_integer_arithmetic_stays_in_32_bits() -> None:
    """Overflow is a math error; division truncates towards 0; % has the sign of x."""
    assert error_kind("2147483647 + 1") == "math"
    assert error_kind("-2147483648 - 1") == "math"
    assert error_kind("65536 * 65536") == "math"
    assert error_kind("-2147483648 / -1") == "math"
    assert error_kind("-(-2147483648)") == "math"
    assert run("2147483647 + 1").value == 0
    assert value("-7 / 2") == -3 and value("7 / -2") == -3
    assert value("-7 % 2") == -1 and value("7 % -2") == 1


def test_string_literals_and_their_escapes() -> None:
    """A doubled or backslashed quote is the quote; other backslashes stay as written."""
    assert value("'it''s'") == "it's"
    assert value("'it\\'s'") == "it's"
    assert value('"say ""hi"""') == 'say "hi"'
    assert value("'a\\nb'") == "a\\nb"
    assert value("'caf\u00e9 \u2603'") == "caf\u00e9 \u2603"


def test_casts_from_strings_are_strict() -> None:
    """Only ASCII digits with an optional sign are an Integer; the range is 32 bits."""
    assert value("INT('+0042')") == 42
    for text in (" 1", "1 ", "1_000", "\u0663", "0x10", "", "2147483648"):
        assert error_kind("INT(x)", x=text) == "cast", text
    assert value("BOOL('TrUe')") is True
    assert error_kind("BOOL('yes')") == "cast"


def test_like_patterns() -> None:
    """Regular-expression characters are plain; \\% and \\_ are the characters; _ is one
    code point; a pattern full of % stays fast on a long value."""
    assert value("x LIKE 'a.c'", x="a.c") is True and value("x LIKE 'a.c'", x="abc") is False
    assert value("x LIKE '(a+)*'", x="(a+)*") is True
    assert value("x LIKE '_'", x="\u2603") is True
    assert value("x LIKE '100\\%'", x="100%") is True
    assert value("x LIKE '%b_d%'", x="abcde") is True
    assert value("x LIKE 'a%b%c'", x="abc") is True
    assert value("x LIKE 'a%b%c'", x="acb") is False
    assert value("x LIKE '%a%a'", x="aa") is True and value("x LIKE 'a%a'", x="a") is False
    started = time.perf_counter()
    assert value("x LIKE '" + "%a" * 40 + "%b'", x="a" * 5000) is False
    assert time.perf_counter() - started < 1.0


def test_string_functions_edges() -> None:
    """TRIM removes Unicode white space only; SUBSTRING refuses a negative length; RIGHT of
    0 is empty; CONCAT_WS puts the separator between values only."""
    assert value("TRIM(x)", x="\u3000a\u00a0") == "a"
    assert value("TRIM(x)", x="\x1fa\x1f") == "\x1fa\x1f"
    assert run("SUBSTRING('abc', 1, -1)").value == ""
    assert error_kind("SUBSTRING('abc', 1, -1)") == "functionEvaluation"
    assert value("RIGHT('abc', 0)") == "" and value("LEFT('abc', 0)") == ""
    assert value("CONCAT_WS('-', 'a', 1, TRUE)") == "a-1-true"
    assert value("length(upper('stra\u00dfe'))") == 7


def test_type_tests() -> None:
    """IS_INT and IS_BOOL say whether a value casts without error; IS_STRING is always true."""
    assert value("IS_INT('12')") is True and value("IS_INT('1.5')") is False
    assert value("IS_BOOL('false')") is True and value("IS_BOOL(2)") is True
    assert value("IS_STRING(1)") is True


def test_a_failing_function_inside_an_expression_gives_the_zero_value() -> None:
    """Only the whole expression keeps a function's own value; inside it, its caller fails."""
    assert run("ABS(-2147483648)").value == 2147483647
    assert run("ABS(-2147483648) + 1").value == 0
    assert run("LENGTH(LEFT('abc', -1))").value == 0


def test_in_compares_in_order_casting_to_the_left_type() -> None:
    """A match before a value that cannot be cast is true; the value after it fails."""
    assert value("1 IN (1, 'x')") is True
    assert error_kind("2 IN (1, 'x', 2)") == "cast"
    assert value("x IN (y, 'b')", x="b", y=3) is True
    assert error_kind("x IN (y)", x=3, y="b") == "cast"


def test_attribute_values_are_cesql_values() -> None:
    """Names are case-insensitive; an integer outside 32 bits and any other value are
    Strings; a missing attribute is an error, not a value."""
    assert value("MYINT + 1", myint=41) == 42
    assert value("big = '4294967296'", big=2**32) is True
    assert value("flag AND TRUE", flag=True) is True
    assert error_kind("gone = 1") == "missingAttribute"
    assert value("EXISTS gone") is False and value("EXISTS ID") is True


def test_matches_is_true_only_for_the_boolean_true_without_error() -> None:
    """A String, an Integer or an error is no match; the static type is known."""
    event = {**EVENT, "flag": "true", "n": 1}
    assert compile_expression("flag = 'true'").matches(event)
    assert not compile_expression("flag").matches(event)
    assert not compile_expression("n").matches(event)
    assert not compile_expression("n / 0 = 0").matches(event)
    assert compile_expression("1 + 1").type is Type.INTEGER
    assert compile_expression("x").type is None
    (missing,) = compile_expression("TRUE AND NOPE(1, 2)").missing_functions()
    assert (missing.name, missing.arity, missing.position) == ("NOPE", 2, 10)


def test_test_answers_as_matches_with_the_error_instead_of_false() -> None:
    """``test`` is True or False exactly as ``matches`` is, except that an evaluation error
    comes back as the error itself (its kind intact), from the one evaluation; a
    ``decider`` answers what its ``on_error`` makes of the error."""
    event = {**EVENT, "flag": "true", "n": 0, "word": "abc"}
    assert compile_expression("flag = 'true'").test(event) is True
    assert compile_expression("flag = 'false'").test(event) is False
    assert compile_expression("n").test(event) is False
    cases = {"1 / n = 0": "math", "INT(word) > 3": "cast", "gone = 1": "missingAttribute"}
    for text, kind in cases.items():
        found = compile_expression(text).test(event)
        assert isinstance(found, EvaluationError) and found.kind == kind, (text, found)
        assert not compile_expression(text).matches(event)
        decide = compile_expression(text).decider(lambda error: error.kind)
        assert decide(event) == kind
    decide = compile_expression("flag = 'true'").decider(lambda error: error.kind)
    assert decide(event) is True and decide({**event, "flag": "no"}) is False


def test_the_engine_imports_nothing_else_from_incidents() -> None:
    """incidents.cesql is standalone: its modules import only the standard library and
    each other."""
    package = Path(__file__).resolve().parent.parent / "src" / "incidents" / "cesql"
    imported = {
        name
        for module in package.glob("*.py")
        for name in re.findall(r"^(?:from|import) (incidents[\w.]*)", module.read_text(), re.M)
    }
    assert imported and all(name.startswith("incidents.cesql") for name in imported), imported


def test_a_function_builds_no_string_past_the_bound() -> None:
    """CONCAT, CONCAT_WS and the other string functions build at most 65,536 characters:
    past that, a functionEvaluation error with the empty string, and an expression that
    repeats a large attribute thousands of times allocates nothing for it; an argument handed
    back as it is (STRING, LEFT past its length) is no new String."""
    big = "x" * 40_000
    assert value("LENGTH(CONCAT(x, 'y'))", x=big) == 40_001
    for text in ("CONCAT(x, x)", "CONCAT_WS(',', x, x)", "UPPER(CONCAT(x, x))"):
        result = run(text, x=big)
        assert result.value == "" and [e.kind for e in result.errors] == ["functionEvaluation"]
    assert error_kind("UPPER(x)", x="\u00df" * 40_000) == "functionEvaluation"  # 80,000 back
    huge = "x" * 100_000
    assert value("STRING(x) = x AND LEFT(x, 2147483647) = x", x=huge) is True
    repeated = compile_expression("CONCAT(" + ", ".join(["x"] * 2000) + ") = 'x'")
    tracemalloc.start()
    try:
        result = repeated.evaluate({"x": huge})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.kind for e in result.errors] == ["functionEvaluation"]
    assert peak < 10_000_000, peak


def test_a_long_run_of_one_logic_operator_parses_in_linear_time() -> None:
    """A run of terms joined by AND (no length limit by default) parses in CPU time linear in
    its length (four times the terms, well under eight times the time; a quadratic parse takes
    sixteen) into one node; a parenthesized run of the same operator joins it."""

    def fastest(terms: int) -> float:
        text = " AND ".join(["a"] * terms)
        took = []
        for _ in range(3):
            started = (
                time.thread_time()
            )  # this thread's CPU time: other processes' load is not in it
            compile_expression(text)
            took.append(time.thread_time() - started)
        return min(took)

    # Nor is the collector's, whose passes cost as much as the whole test process holds, which
    # says nothing about the parser. (On wall time, a loaded machine once made 20,000 terms
    # take 17 times as long as 5,000.)
    gc.collect()
    gc.disable()
    try:
        assert fastest(20_000) < 8 * fastest(5_000)
    finally:
        gc.enable()
    expression = compile_expression(" AND ".join(["a"] * 20_000))
    assert expression.tree.depth == 2
    assert expression.evaluate({"a": True}) == Result(True)
    assert compile_expression("(a AND b) AND c OR d").tree.depth == 3
