"""CloudEvents Subscriptions API filters: the ``exact``, ``prefix``, ``suffix``, ``all``,
``any``, ``not`` and ``sql`` dialects over any attribute, extensions included.

A subscription's ``filters`` is a list of filter expressions that must all match. Each
expression is a JSON object with exactly one dialect key. An unsupported dialect or a
malformed expression is rejected with a FieldError that names it.

``sql`` is CloudEvents SQL v1.0.0, compiled once (``model/sql_filter.py``); an
evaluation error is no match. An expression that can never pass (one calling an unknown
function, or always giving an Integer or a String) is refused when registered.

Routing asks ``decide`` rather than ``matches``: the same answer from the same single
evaluation, except that filters which fail because an ``sql`` expression met an evaluation
error other than a missing attribute say so with an ``SqlFailure`` (falsy, like the no match
it is), so the subscription's delivery log can name it. Where an ``all`` fails, the part that
failed first decides; an ``any`` fails on the first failure among its parts; a ``not`` of a
failure passes (the failure was no match). ``decide`` costs no more than ``matches`` (less:
``all`` and ``any`` loop without a generator) until an expression fails.

Filters run on every matching event, so their size is bounded: ``all``/``any``/``not`` nest
at most ``MAX_DEPTH`` deep, and one subscription's filters hold at most ``MAX_TERMS``
expressions and attribute tests together, each value at most ``MAX_VALUE`` characters; an
``sql`` expression has at most ``SQL_MAX_LENGTH`` characters, nests at most
``SQL_MAX_DEPTH`` deep (``a = 1`` is 2 deep; a run of one of AND, OR, XOR counts once) and
lists at most ``SQL_MAX_IN`` values in one ``IN``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from incidents.errors import FieldError, pointer
from incidents.model.cloudevent import AttributeValue
from incidents.model.sql_filter import Sql, SqlFailure, compile_sql

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "sql")
MAX_DEPTH = 16
MAX_TERMS = 256
MAX_VALUE = 1024
FILTER = "SubscriptionFilter"  # the OpenAPI component of one filter expression
_ATTRIBUTE = re.compile(r"[a-z0-9]{1,20}")


class Filter(Protocol):
    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool: ...

    def decide(self, attributes: Mapping[str, AttributeValue]) -> bool | SqlFailure:
        """``matches``, but an ``SqlFailure`` instead of False when the filter fails
        because an ``sql`` expression met an error other than a missing attribute."""
        ...


def canonical(value: AttributeValue) -> str:
    """The CloudEvents canonical string form of an attribute value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Compare:
    dialect: str  # exact, prefix or suffix
    pairs: tuple[tuple[str, str], ...]

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        for name, wanted in self.pairs:
            value = attributes.get(name)
            if value is None:
                return False
            text = canonical(value)
            if self.dialect == "exact" and text != wanted:
                return False
            if self.dialect == "prefix" and not text.startswith(wanted):
                return False
            if self.dialect == "suffix" and not text.endswith(wanted):
                return False
        return True

    decide = matches  # a comparison never meets an sql error


@dataclass(frozen=True)
class AllOf:
    """Matches when every part matches (the ``all`` dialect, and a subscription's filters)."""

    parts: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        return all(p.matches(attributes) for p in self.parts)

    def decide(self, attributes: Mapping[str, AttributeValue]) -> bool | SqlFailure:
        for part in self.parts:
            found = part.decide(attributes)
            if found is not True:
                return found  # the first part that fails decides (and is the last evaluated)
        return True


@dataclass(frozen=True)
class AnyOf:
    """Matches when at least one part matches (the ``any`` dialect)."""

    parts: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        return any(p.matches(attributes) for p in self.parts)

    def decide(self, attributes: Mapping[str, AttributeValue]) -> bool | SqlFailure:
        failure: SqlFailure | None = None
        for part in self.parts:
            found = part.decide(attributes)
            if found is True:
                return True
            if failure is None and isinstance(found, SqlFailure):
                failure = found
        return False if failure is None else failure


@dataclass(frozen=True)
class Not:
    part: Filter

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        return not self.part.matches(attributes)

    def decide(self, attributes: Mapping[str, AttributeValue]) -> bool:
        # An error inside is no match there, so not of it passes: nothing failed here.
        return self.part.decide(attributes) is not True


def sql_failure(found: Filter, attributes: Mapping[str, AttributeValue]) -> str | None:
    """Why an ``sql`` expression within ``found`` fails on these attributes (an evaluation
    error or a value that is not a Boolean), naming it; None when none fails. For saying why
    an event did not match; matching itself never calls it."""
    if isinstance(found, Sql):
        return found.failure(attributes)
    parts: tuple[Filter, ...] = ()
    if isinstance(found, AllOf | AnyOf):
        parts = found.parts
    elif isinstance(found, Not):
        parts = (found.part,)
    for part in parts:
        if (why := sql_failure(part, attributes)) is not None:
            return why
    return None


class _Budget:
    """Terms left to parse; once spent, parsing stops (the first overrun is reported)."""

    def __init__(self) -> None:
        self.left = MAX_TERMS

    def spend(self, problems: list[FieldError], at: Sequence[str | int]) -> bool:
        self.left -= 1
        if self.left == -1:
            problems.append(
                FieldError(
                    pointer(*at),
                    f"filters hold at most {MAX_TERMS} expressions and attribute tests",
                )
            )
        return self.left >= 0


def parse_filters(
    raw: object, at: Sequence[str | int] = ("filters",)
) -> tuple[Filter, list[FieldError]]:
    """Parse a ``filters`` list into one filter (all must match) and the problems found."""
    problems: list[FieldError] = []
    if not isinstance(raw, list):
        return AllOf(()), [FieldError(pointer(*at), "filters must be a list of filter expressions")]
    budget = _Budget()
    parts = []
    for i, item in enumerate(raw):
        if not budget.spend(problems, (*at, i)):
            break
        parts.append(_parse(item, (*at, i), problems, budget, 1))
    return AllOf(tuple(parts)), problems


def _parse(
    raw: object, at: tuple[str | int, ...], problems: list[FieldError], budget: _Budget, depth: int
) -> Filter:
    here = pointer(*at)
    if not isinstance(raw, dict) or len(raw) != 1:
        problems.append(
            FieldError(here, "a filter expression is an object with exactly one dialect key")
        )
        return AllOf(())
    ((dialect, body),) = raw.items()
    where = (*at, dialect)
    if dialect not in DIALECTS:
        problems.append(
            FieldError(
                pointer(*where),
                f"unsupported filter dialect {dialect!r}; supported: {', '.join(DIALECTS)}",
            )
        )
        return AllOf(())
    if dialect in ("exact", "prefix", "suffix"):
        return _compare(dialect, body, where, problems, budget)
    if dialect == "sql":
        return _sql(body, where, problems)
    if depth >= MAX_DEPTH:
        problems.append(
            FieldError(pointer(*where), f"all, any and not nest at most {MAX_DEPTH} deep")
        )
        return AllOf(())
    if dialect == "not":
        if not budget.spend(problems, where):
            return AllOf(())
        return Not(_parse(body, where, problems, budget, depth + 1))
    if not isinstance(body, list) or not body:
        problems.append(FieldError(pointer(*where), f"{dialect} takes a non-empty list of filters"))
        return AllOf(())
    parts = []
    for i, item in enumerate(body):
        if not budget.spend(problems, (*where, i)):
            break
        parts.append(_parse(item, (*where, i), problems, budget, depth + 1))
    return AllOf(tuple(parts)) if dialect == "all" else AnyOf(tuple(parts))


def _compare(
    dialect: str,
    body: object,
    where: tuple[str | int, ...],
    problems: list[FieldError],
    budget: _Budget,
) -> Filter:
    if not isinstance(body, dict) or not body:
        problems.append(
            FieldError(pointer(*where), f"{dialect} takes an object of attribute: string")
        )
        return AllOf(())
    pairs = []
    for name, value in body.items():
        at = pointer(*where, name)
        if not budget.spend(problems, (*where, name)):
            break
        if not _ATTRIBUTE.fullmatch(name):
            problems.append(FieldError(at, f"{name!r} is not a CloudEvents attribute name"))
        elif not isinstance(value, str) or (dialect != "exact" and not value):
            problems.append(FieldError(at, f"{dialect} needs a non-empty string value"))
        elif len(value) > MAX_VALUE:
            problems.append(FieldError(at, f"a filter value has at most {MAX_VALUE} characters"))
        else:
            pairs.append((name, value))
    return Compare(dialect, tuple(pairs))


def _sql(body: object, where: tuple[str | int, ...], problems: list[FieldError]) -> Filter:
    if not isinstance(body, str) or not body.strip():
        problems.append(
            FieldError(pointer(*where), "sql takes a CloudEvents SQL expression (a string)")
        )
        return AllOf(())
    compiled, why = compile_sql(body)
    if compiled is None:
        problems.append(FieldError(pointer(*where), why or "not a valid expression"))
        # Never true: were a stored expression ever to stop compiling (a lower bound, say),
        # its subscription would receive nothing rather than everything.
        return AnyOf(())
    return compiled
