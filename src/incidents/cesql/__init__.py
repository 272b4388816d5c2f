"""CloudEvents SQL (CESQL v1.0.0): a standalone engine, importing nothing else from
``incidents``.

    expression = compile_expression("imseverity IN ('SEV1', 'SEV2')")  # ParseError if bad
    expression.evaluate(event.attributes)  # Result(value=True, errors=())
    expression.matches(event.attributes)   # as a filter: True only for true, no error

Modules: ``lexer`` (tokens), ``parser`` (precedence, limits) into ``syntax`` (the tree),
``compiler`` (the tree into closures), ``arithmetic`` (integer operators), ``values``
(types, casts, attribute values), ``like`` (patterns), ``functions`` (built-ins),
``sql_errors`` (the error kinds).
"""

from incidents.cesql.expression import Expression, MissingFunction, Result, compile_expression
from incidents.cesql.parser import Limits
from incidents.cesql.sql_errors import (
    CastError,
    CesqlError,
    EvaluationError,
    FunctionEvaluationError,
    GenericError,
    MathError,
    MissingAttributeError,
    MissingFunctionError,
    ParseError,
    Value,
)
from incidents.cesql.values import Type

__all__ = [
    "CastError",
    "CesqlError",
    "EvaluationError",
    "Expression",
    "FunctionEvaluationError",
    "GenericError",
    "Limits",
    "MathError",
    "MissingAttributeError",
    "MissingFunction",
    "MissingFunctionError",
    "ParseError",
    "Result",
    "Type",
    "Value",
    "compile_expression",
]
