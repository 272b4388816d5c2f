"""CloudEvents Subscriptions API filters: the ``exact``, ``prefix``, ``suffix``, ``all``,
``any`` and ``not`` dialects over any attribute, extensions included.

A subscription's ``filters`` is a list of filter expressions that must all match. Each
expression is a JSON object with exactly one dialect key. An unsupported dialect (``sql``,
say) or a malformed expression is rejected with a FieldError that names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from incidents.errors import FieldError, pointer
from incidents.model.cloudevent import AttributeValue

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not")
_ATTRIBUTE = re.compile(r"^[a-z0-9]{1,20}$")


class Filter(Protocol):
    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool: ...


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


@dataclass(frozen=True)
class All:
    parts: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        return all(p.matches(attributes) for p in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        return any(p.matches(attributes) for p in self.parts)


@dataclass(frozen=True)
class Not:
    part: Filter

    def matches(self, attributes: Mapping[str, AttributeValue]) -> bool:
        return not self.part.matches(attributes)


def parse_filters(
    raw: Any, at: Sequence[str | int] = ("filters",)
) -> tuple[Filter, list[FieldError]]:
    """Parse a ``filters`` list into one filter (all must match) and the problems found."""
    problems: list[FieldError] = []
    if not isinstance(raw, list):
        return All(()), [FieldError(pointer(*at), "filters must be a list of filter expressions")]
    parts = tuple(_parse(item, (*at, i), problems) for i, item in enumerate(raw))
    return All(parts), problems


def _parse(raw: Any, at: tuple[str | int, ...], problems: list[FieldError]) -> Filter:
    here = pointer(*at)
    if not isinstance(raw, dict) or len(raw) != 1:
        problems.append(
            FieldError(here, "a filter expression is an object with exactly one dialect key")
        )
        return All(())
    ((dialect, body),) = raw.items()
    where = (*at, dialect)
    if dialect not in DIALECTS:
        problems.append(
            FieldError(
                pointer(*where),
                f"unsupported filter dialect {dialect!r}; supported: {', '.join(DIALECTS)}",
            )
        )
        return All(())
    if dialect in ("exact", "prefix", "suffix"):
        if not isinstance(body, dict) or not body:
            problems.append(
                FieldError(pointer(*where), f"{dialect} takes an object of attribute: string")
            )
            return All(())
        pairs = []
        for name, value in body.items():
            if not _ATTRIBUTE.match(name):
                problems.append(
                    FieldError(
                        pointer(*where, name), f"{name!r} is not a CloudEvents attribute name"
                    )
                )
            elif not isinstance(value, str) or (dialect != "exact" and not value):
                problems.append(
                    FieldError(pointer(*where, name), f"{dialect} needs a non-empty string value")
                )
            else:
                pairs.append((name, value))
        return Compare(dialect, tuple(pairs))
    if dialect == "not":
        return Not(_parse(body, where, problems))
    if not isinstance(body, list) or not body:
        problems.append(FieldError(pointer(*where), f"{dialect} takes a non-empty list of filters"))
        return All(())
    parts = tuple(_parse(item, (*where, i), problems) for i, item in enumerate(body))
    return All(parts) if dialect == "all" else Any_(parts)
