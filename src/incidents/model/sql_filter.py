"""The ``sql`` filter dialect: a CloudEvents SQL v1.0.0 expression (``incidents.cesql``),
compiled once, when the subscription is registered or read (a worker's cache keeps it),
never per event, within bounds: at most ``SQL_MAX_LENGTH`` characters, nesting at most
``SQL_MAX_DEPTH`` deep (``a = 1`` is 2 deep; a run of one of AND, OR, XOR counts once), at
most ``SQL_MAX_IN`` values in one ``IN``.

As the CESQL spec says of filters (section 1.2), the event passes only when the expression
gives the Boolean ``true`` without error; an evaluation error (a cast that fails, a division
by zero, an attribute the event lacks) is no match. ``Sql.decide`` tells such an error apart
(an ``SqlFailure``) from the same one evaluation, at the cost of ``matches`` when there is
none, except a missing attribute: that is how a narrow filter ordinarily misses an event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from incidents.cesql import (
    EvaluationError,
    Expression,
    Limits,
    MissingAttributeError,
    ParseError,
    Type,
)
from incidents.model.cloudevent import AttributeValue

SQL_MAX_LENGTH = 4096  # characters of one sql expression
SQL_MAX_DEPTH = 32  # of its tree
SQL_MAX_IN = 256  # values in one IN list
SQL_LIMITS = Limits(max_length=SQL_MAX_LENGTH, max_depth=SQL_MAX_DEPTH, max_in=SQL_MAX_IN)


@dataclass(frozen=True, slots=True)
class SqlFailure:
    """An ``sql`` expression that met an evaluation error: no match, and why. Falsy, as the
    no match it stands for."""

    expression: str
    error: EvaluationError

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return failed(self.expression, self.error)


def failed(expression: str, error: EvaluationError) -> str:
    """What the delivery log and the routes say of an expression that met ``error``."""
    return f"sql {expression!r} failed: {error.kind} error: {error}"


class Sql:
    """A CloudEvents SQL expression, compiled."""

    __slots__ = ("decide", "expression", "matches", "program")
    matches: Callable[[Mapping[str, AttributeValue]], bool]
    decide: Callable[[Mapping[str, AttributeValue]], bool | SqlFailure]

    def __init__(self, program: Expression) -> None:
        self.program = program
        self.expression = program.text
        self.matches = program.matches  # the compiled test itself: no call in between
        self.decide = program.decider(self._failure)  # as cheap, unless it fails

    def _failure(self, error: EvaluationError) -> bool | SqlFailure:
        if isinstance(error, MissingAttributeError):
            return False  # a narrow filter missing an event, not a failure worth a log entry
        return SqlFailure(self.expression, error)

    def failure(self, attributes: Mapping[str, AttributeValue]) -> str | None:
        """Why the expression does not pass on these attributes when it fails (its error,
        or a value that is not a Boolean), naming it; None when it gives a Boolean."""
        result = self.program.evaluate(attributes)
        if result.errors:
            return failed(self.expression, result.errors[0])
        if type(result.value) is not bool:
            return f"sql {self.expression!r} gave {result.value!r}, not a Boolean"
        return None

    def __repr__(self) -> str:
        return f"Sql({self.expression!r})"


def compile_sql(text: str) -> tuple[Sql | None, str | None]:
    """The compiled expression, or why it cannot be a filter (a parse error with its
    position and what was expected, an unknown function, a result that is never a
    Boolean)."""
    try:
        program = Expression(text, SQL_LIMITS)
    except ParseError as exc:
        return None, f"not a CloudEvents SQL expression: {exc}"
    for missing in program.missing_functions():
        return None, (
            f"no function {missing.name} taking {missing.arity} argument(s) "
            f"(at position {missing.position})"
        )
    if program.type in (Type.INTEGER, Type.STRING):
        return None, f"the expression gives an {program.type}; a filter needs a Boolean"
    return Sql(program), None
