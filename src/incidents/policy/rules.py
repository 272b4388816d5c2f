"""The policy model: label defaults and ordered, named rules, and how an event meets them.

Files are read by ``incidents.policy.files``; this module only holds the values and the
matching, so tests and the admission step can build policies directly.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from incidents.model.labels import DataClass, Visibility

FALLBACK_DATA_CLASS = DataClass.INTERNAL
FALLBACK_VISIBILITY = Visibility.INTERNAL


def _any_glob(value: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, g) for g in globs)


def lookup(data: object, path: tuple[str, ...]) -> object:
    """The value at a dotted path in ``data``, or None when any step is missing."""
    node = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _labels(item: Default | Rule, kind: str) -> None:
    """Labels given as strings become the enums; a label outside the vocabulary is refused."""
    try:
        if item.data_class is not None:
            object.__setattr__(item, "data_class", DataClass.parse(item.data_class))
    except ValueError:
        raise ValueError(f"{kind} {item.name!r}: unknown data class {item.data_class!r}") from None
    try:
        if item.visibility is not None:
            object.__setattr__(item, "visibility", Visibility.parse(item.visibility))
    except ValueError:
        raise ValueError(f"{kind} {item.name!r}: unknown visibility {item.visibility!r}") from None


@dataclass(frozen=True)
class Match:
    """Every condition given must hold; an empty match matches every event."""

    types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    data: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    def matches(self, event_type: str, source: str, tenant: str, data: object) -> bool:
        if self.types and not _any_glob(event_type, self.types):
            return False
        if self.sources and not _any_glob(source, self.sources):
            return False
        if self.tenants and not _any_glob(tenant, self.tenants):
            return False
        for path, globs in self.data:
            value = lookup(data, path)
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, str | int | float) or not _any_glob(str(value), globs):
                return False
        return True


@dataclass(frozen=True)
class Default:
    match: Match
    data_class: DataClass | None = None
    visibility: Visibility | None = None
    name: str = ""
    origin: str = ""  # path:line it came from

    def __post_init__(self) -> None:
        _labels(self, "default")


@dataclass(frozen=True)
class Rule:
    """A named rule: when it matches, raise the labels to at least ``data_class`` and
    ``visibility``, or refuse the event with ``reject``."""

    name: str
    match: Match
    data_class: DataClass | None = None
    visibility: Visibility | None = None
    reject: str | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        _labels(self, "rule")
        if (self.reject is None) == (self.data_class is None and self.visibility is None):
            raise ValueError(f"rule {self.name!r} must either require labels or reject")


@dataclass(frozen=True)
class Policy:
    defaults: tuple[Default, ...] = ()
    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = field(default=())

    def default_labels(
        self, event_type: str, source: str, tenant: str, data: object
    ) -> tuple[DataClass, Visibility]:
        """(data class, visibility) for an event that carries none: the first matching
        default that sets each, else ``internal``."""
        data_class: DataClass | None = None
        visibility: Visibility | None = None
        for d in self.defaults:
            if (data_class is None or visibility is None) and d.match.matches(
                event_type, source, tenant, data
            ):
                data_class = data_class or d.data_class
                visibility = visibility or d.visibility
        return data_class or FALLBACK_DATA_CLASS, visibility or FALLBACK_VISIBILITY

    def matching_rules(self, event_type: str, source: str, tenant: str, data: object) -> list[Rule]:
        return [r for r in self.rules if r.match.matches(event_type, source, tenant, data)]
