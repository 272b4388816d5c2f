"""The errors of CloudEvents SQL (CESQL v1.0.0, section 3.3), each named by its ``kind`` as
the TCK names it.

    CesqlError
    ├── ParseError                  parse               (the expression is not CESQL)
    └── EvaluationError             (evaluating it; a value comes with it)
        ├── MathError               math                (division by zero, overflow)
        ├── CastError               cast                (a value that cannot be cast)
        ├── MissingAttributeError   missingAttribute    (an attribute the event lacks)
        ├── MissingFunctionError    missingFunction     (no function of that name and arity)
        ├── FunctionEvaluationError functionEvaluation  (a function refused its arguments)
        └── GenericError            generic

A parse error is raised by ``compile_expression``; an evaluation error is never raised to the
caller, it comes back in ``Result.errors`` beside the value the expression still has (the
zero value of its type, or the function's own value when the failing function is the whole
expression, as ``ABS(-2147483648)`` is ``2147483647``).
"""

from __future__ import annotations

from typing import ClassVar

Value = bool | int | str


class CesqlError(Exception):
    kind: ClassVar[str] = "generic"


class ParseError(CesqlError):
    """Where (``position``: characters from 1) and what was expected."""

    kind: ClassVar[str] = "parse"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


class EvaluationError(CesqlError):
    """Raised inside an evaluation only; ``value`` and ``origin`` are set by a function
    whose failure has a value of its own (``origin``: the id of its call)."""

    kind: ClassVar[str] = "generic"

    def __init__(self, message: str, value: Value | None = None, origin: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.origin = origin


class MathError(EvaluationError):
    kind: ClassVar[str] = "math"


class CastError(EvaluationError):
    kind: ClassVar[str] = "cast"


class MissingAttributeError(EvaluationError):
    kind: ClassVar[str] = "missingAttribute"


class MissingFunctionError(EvaluationError):
    kind: ClassVar[str] = "missingFunction"


class FunctionEvaluationError(EvaluationError):
    kind: ClassVar[str] = "functionEvaluation"


class GenericError(EvaluationError):
    kind: ClassVar[str] = "generic"
