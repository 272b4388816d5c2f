from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from incidents.model.plan import NO_PLAN, Plan

AttributeValue = str | int | bool


@dataclass(frozen=True)
class CloudEvent:
    """A validated CloudEvent: context attributes and extensions, plus its data.

    Build one from untrusted input only through ``incidents.ingest.envelope``; this type
    checks its invariants but not every CloudEvents rule.
    """

    attributes: Mapping[str, AttributeValue]
    data: Any = None
    data_base64: str | None = None

    def __post_init__(self) -> None:
        for required in _REQUIRED:
            value = self.attributes.get(required)
            if not isinstance(value, str) or not value:
                raise ValueError(f"CloudEvent attribute {required!r} must be a non-empty string")
        if self.data is not None and self.data_base64 is not None:
            raise ValueError("CloudEvent cannot carry both data and data_base64")
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    def get(self, name: str, default: AttributeValue | None = None) -> AttributeValue | None:
        return self.attributes.get(name, default)

    def with_attributes(self, **changes: AttributeValue | None) -> CloudEvent:
        """A copy with attributes set (or removed, when given None)."""
        attrs = _copied(self.attributes)
        for name, value in changes.items():
            if value is None:
                attrs.pop(name, None)
            else:
                attrs[name] = value
        if _REQUIRED_SET.isdisjoint(changes):  # this event's invariants hold for the copy
            return _unchecked(attrs, self.data, self.data_base64)
        return CloudEvent(attrs, self.data, self.data_base64)

    def with_data(self, data: Any) -> CloudEvent:
        return _unchecked(self.attributes, data, None)  # the attributes stay as they were

    def to_dict(self) -> dict[str, Any]:
        """The CloudEvents JSON event format."""
        body: dict[str, Any] = _copied(self.attributes)
        if self.data_base64 is not None:
            body["data_base64"] = self.data_base64
        elif self.data is not None:
            body["data"] = self.data
        return body

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CloudEvent:
        attrs = {k: v for k, v in raw.items() if k not in ("data", "data_base64")}
        return cls(attrs, raw.get("data"), raw.get("data_base64"))


_REQUIRED = ("id", "source", "specversion", "type")
_REQUIRED_SET = frozenset(_REQUIRED)


def _copied(attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """A fresh dict of ``attributes``: a read-only view (what every CloudEvent holds) copies
    its dict at C speed, where ``dict(view)`` walks it key by key."""
    if type(attributes) is MappingProxyType:
        return attributes.copy()
    return dict(attributes)


def _unchecked(
    attributes: Mapping[str, AttributeValue], data: Any, data_base64: str | None
) -> CloudEvent:
    """A CloudEvent derived from a valid one without checking again: ``attributes`` is a
    fresh dict nobody else holds, or already a read-only view. Its fields are set in its
    ``__dict__``, as ``object.__setattr__`` would set them, in a third of the time."""
    event = object.__new__(CloudEvent)
    view = attributes if type(attributes) is MappingProxyType else MappingProxyType(attributes)
    fields = event.__dict__
    fields["attributes"] = view
    fields["data"] = data
    fields["data_base64"] = data_base64
    return event


@dataclass(frozen=True)
class StoredEvent:
    """An accepted event as the gateway keeps it: with its gateway sequence and ingest time."""

    event: CloudEvent
    sequence: int
    ingested_at: datetime
    principal: str = ""
    plan: Plan = NO_PLAN  # stored as "meta"

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.to_dict(),
            "sequence": self.sequence,
            "ingested_at": self.ingested_at.isoformat(),
            "principal": self.principal,
            "meta": self.plan.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StoredEvent:
        ingested = datetime.fromisoformat(raw["ingested_at"])
        if ingested.tzinfo is None:
            ingested = ingested.replace(tzinfo=UTC)
        return cls(
            event=CloudEvent.from_dict(raw["event"]),
            sequence=int(raw["sequence"]),
            ingested_at=ingested,
            principal=str(raw.get("principal", "")),
            plan=Plan.from_dict(raw.get("meta")),
        )
