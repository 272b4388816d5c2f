"""A compiled CESQL expression: parsed and compiled once, then evaluated against any number
of events."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from incidents.cesql import syntax as ast
from incidents.cesql.compiler import compile_node, static_type
from incidents.cesql.functions import resolve
from incidents.cesql.parser import Limits, parse
from incidents.cesql.sql_errors import EvaluationError, Value
from incidents.cesql.values import ZERO, Type

T = TypeVar("T")
DEFAULT_LIMITS = Limits()  # no bound on the length or IN lists; the depth is bounded


@dataclass(frozen=True)
class Result:
    """An evaluation's value and its errors (at most one: evaluation stops at the first)."""

    value: Value
    errors: tuple[EvaluationError, ...] = ()


@dataclass(frozen=True)
class MissingFunction:
    name: str
    arity: int
    position: int


class Expression:
    """``evaluate`` gives the value and errors the spec defines; ``matches`` answers a
    filter's question: true only for the Boolean ``true`` without error (section 1.2);
    ``test`` answers it too, giving the error instead of False when there was one."""

    def __init__(self, text: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.text = text
        self.tree = parse(text, limits)  # kept: the ids of its calls name errors' origins
        self.type: Type | None = static_type(self.tree)
        self._run = compile_node(self.tree)
        self._zero = ZERO[self.type]
        self._origin = id(self.tree)

    def evaluate(self, attributes: Mapping[str, object]) -> Result:
        try:
            return Result(self._run(attributes))
        except EvaluationError as exc:
            own = exc.value is not None and exc.origin == self._origin
            return Result(exc.value if own and exc.value is not None else self._zero, (exc,))

    def matches(self, attributes: Mapping[str, object]) -> bool:
        try:
            return self._run(attributes) is True
        except EvaluationError:
            return False

    def decider(
        self, on_error: Callable[[EvaluationError], T]
    ) -> Callable[[Mapping[str, object]], bool | T]:
        """A test as cheap as ``matches`` that answers ``on_error(error)`` instead of False
        when evaluating meets an error: for a filter that must tell why it failed."""
        run = self._run

        def decide(attributes: Mapping[str, object]) -> bool | T:
            try:
                return run(attributes) is True
            except EvaluationError as exc:
                return on_error(exc)

        return decide

    def test(self, attributes: Mapping[str, object]) -> bool | EvaluationError:
        """``matches``, but the error instead of False when evaluating met one: whether a
        filter passes and why it failed, from one evaluation."""
        try:
            return self._run(attributes) is True
        except EvaluationError as exc:
            return exc

    def missing_functions(self) -> list[MissingFunction]:
        """The calls no function answers (each one fails whenever it is evaluated)."""
        return [
            MissingFunction(n.name, len(n.args), n.position)
            for n in _walk(self.tree)
            if isinstance(n, ast.Call) and resolve(n.name, len(n.args)) is None
        ]

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    yield node
    for child in ast.children(node):
        yield from _walk(child)


def compile_expression(text: str, limits: Limits = DEFAULT_LIMITS) -> Expression:
    """Parse and compile ``text``; raises ``ParseError`` naming the position and what was
    expected."""
    return Expression(text, limits)
