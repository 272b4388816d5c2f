"""The label vocabularies, each the one definition in the code base, lowest to highest.

- ``DataClass``: how sensitive an event's data is (``imdataclass``, a schema's
  ``x-dataclass``); a principal's clearance is a data class too.
- ``Visibility``: who may see an event at all (``imvisibility``): any tenant, the producer's
  tenant, or the producer's tenant with restricted access.

Labels arrive as strings (events, stored documents, policy files); ``parse`` turns one into
the enum and says what was expected, and ``rank_of`` answers None for a label outside the
vocabulary, which the access rule treats as hiding the item.
"""

from __future__ import annotations

from enum import StrEnum


class DataClass(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        """0 for public up to 3 for restricted."""
        return _CLASS_RANK[self]

    @classmethod
    def rank_of(cls, label: str) -> int | None:
        """The rank of a label as written (None when it is not a data class)."""
        return _CLASS_RANK.get(label)

    @classmethod
    def parse(cls, label: object) -> DataClass:
        """The data class a label names; ValueError quoting the label otherwise."""
        if isinstance(label, DataClass):
            return label
        if isinstance(label, str) and label in _CLASS_RANK:
            return cls(label)
        raise ValueError(f"data class {label!r} is not one of {', '.join(DATA_CLASS_NAMES)}")

    def covers(self, data_class: str) -> bool:
        """Whether this clearance covers a data class (a label outside the vocabulary never
        is covered)."""
        rank = _CLASS_RANK.get(data_class)
        return rank is not None and self.rank >= rank

    def stricter(self, other: DataClass) -> DataClass:
        return self if self.rank >= other.rank else other


class Visibility(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        """0 for public up to 2 for restricted."""
        return _VISIBILITY_RANK[self]

    @classmethod
    def rank_of(cls, label: str) -> int | None:
        """The rank of a label as written (None when it is not a visibility)."""
        return _VISIBILITY_RANK.get(label)

    @classmethod
    def parse(cls, label: object) -> Visibility:
        """The visibility a label names; ValueError quoting the label otherwise."""
        if isinstance(label, Visibility):
            return label
        if isinstance(label, str) and label in _VISIBILITY_RANK:
            return cls(label)
        raise ValueError(f"visibility {label!r} is not one of {', '.join(VISIBILITY_NAMES)}")

    def stricter(self, other: Visibility) -> Visibility:
        return self if self.rank >= other.rank else other


# Looked up by plain strings too (a StrEnum member hashes and compares as its value).
_CLASS_RANK: dict[str, int] = {c.value: i for i, c in enumerate(DataClass)}
_VISIBILITY_RANK: dict[str, int] = {v.value: i for i, v in enumerate(Visibility)}

# The values as plain strings, lowest to highest: for messages, CLI choices and JSON Schema enums.
DATA_CLASS_NAMES: tuple[str, ...] = tuple(c.value for c in DataClass)
VISIBILITY_NAMES: tuple[str, ...] = tuple(v.value for v in Visibility)
