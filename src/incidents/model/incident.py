from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any

from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus

DEFAULT_ROLES = ("commander", "comms", "scribe")
_TIMESTAMPS = ("declared_at", "acknowledged_at", "mitigated_at", "resolved_at", "closed_at")


def _parse_ts(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise ValueError(f"{value!r} is not a timestamp")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Incident:
    """An incident as materialized from its timeline. Never edited in place: each applied
    event yields a new value with ``version`` one higher."""

    id: str
    title: str
    severity: Severity
    status: IncidentStatus = IncidentStatus.OPEN
    summary: str = ""
    service: str = ""
    roles: Mapping[str, str | None] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(DEFAULT_ROLES))
    )
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    external_refs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    declared_at: datetime | None = None
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    tenant: str = ""
    data_class: str = "internal"
    visibility: str = "internal"

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an incident needs an id")
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "status", IncidentStatus.parse(self.status))
        for name in _MAPPINGS:
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in _ALL_TIMESTAMPS:
            object.__setattr__(self, name, _parse_ts(getattr(self, name)))
        if self.version < 0:
            raise ValueError(f"incident version {self.version!r} is negative")

    def evolve(self, **changes: Any) -> Incident:
        """A copy with ``changes``, checked as the constructor checks them. Only the changed
        fields are checked and converted (the others are this valid incident's), and the
        document of the copy is this one's with just those fields rewritten: a note, which
        changes only ``version`` and ``updated_at``, costs two fields, not twenty."""
        unknown = changes.keys() - _INCIDENT_NAMES
        if unknown:
            raise TypeError(f"Incident has no field(s) {', '.join(sorted(unknown))}")
        values = dict(self.__dict__)
        document = values.pop(_DOCUMENT, None)
        for name, value in changes.items():
            values[name] = _CONVERT.get(name, _same)(value)
        if not values["id"]:
            raise ValueError("an incident needs an id")
        if values["version"] < 0:
            raise ValueError(f"incident version {values['version']!r} is negative")
        evolved = object.__new__(Incident)
        evolved.__dict__.update(values)
        if document is not None:
            patched = dict(document)
            for name in changes:
                patched[name] = _encode_field(name, values[name])
            if not _CLOCKS.isdisjoint(changes):
                patched["metrics"] = evolved._metrics()
            evolved.__dict__[_DOCUMENT] = patched
        return evolved

    def _elapsed(self, end: datetime | None) -> float | None:
        if self.declared_at is None or end is None:
            return None
        return (end - self.declared_at).total_seconds()

    @property
    def time_to_acknowledge(self) -> float | None:
        return self._elapsed(self.acknowledged_at)

    @property
    def time_to_mitigate(self) -> float | None:
        return self._elapsed(self.mitigated_at)

    @property
    def time_to_resolve(self) -> float | None:
        return self._elapsed(self.resolved_at)

    def _metrics(self) -> dict[str, float | None]:
        return {
            "time_to_acknowledge": self.time_to_acknowledge,
            "time_to_mitigate": self.time_to_mitigate,
            "time_to_resolve": self.time_to_resolve,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field in declaration order, as JSON values, then ``metrics``. Built once per
        incident (an evolved incident patches its parent's) and copied for each caller, down
        to the nested mappings, so a caller may change what it gets."""
        document = self.__dict__.get(_DOCUMENT)
        if document is None:
            document = {name: _encode_field(name, self.__dict__[name]) for name in _INCIDENT_FIELDS}
            document["metrics"] = self._metrics()
            object.__setattr__(self, _DOCUMENT, document)
        out = dict(document)
        for name in _NESTED:
            out[name] = dict(out[name])
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Incident:
        return cls(**{k: v for k, v in raw.items() if k in _INCIDENT_NAMES})


# Field names, computed once: from_dict and to_dict run for every incident event.
_INCIDENT_FIELDS = tuple(f.name for f in fields(Incident))
_INCIDENT_NAMES = frozenset(_INCIDENT_FIELDS)
_MAPPINGS = ("roles", "labels", "external_refs")
_ALL_TIMESTAMPS = (*_TIMESTAMPS, "updated_at")
_NESTED = (*_MAPPINGS, "metrics")
# The timestamps the metrics are measured between.
_CLOCKS = frozenset(("declared_at", "acknowledged_at", "mitigated_at", "resolved_at"))
# Where an incident keeps its document once built (not a field: equality, repr and
# dataclasses.replace ignore it).
_DOCUMENT = "_document"


def _same(value: Any) -> Any:
    return value


# How the constructor converts each field given to it (the others are taken as they are).
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "severity": Severity.parse,
    "status": IncidentStatus.parse,
    **dict.fromkeys(_MAPPINGS, _frozen),
    **dict.fromkeys(_ALL_TIMESTAMPS, _parse_ts),
}


_ENUMS = (Severity, IncidentStatus)


def _encode_field(name: str, value: Any) -> Any:
    """A field's value as the incident's document holds it (JSON)."""
    if isinstance(value, _ENUMS):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if name in _MAPPINGS:
        return dict(value)
    return value


@dataclass(frozen=True)
class TimelineEvent:
    """One entry of an incident's append-only timeline."""

    id: str
    incident_id: str
    type: str
    source: str
    time: datetime
    sequence: int
    actor: str = ""
    title: str = ""
    body: str = ""
    data: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _parse_ts(self.time))
        if self.sequence < 0:
            raise ValueError(f"timeline sequence {self.sequence!r} is negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "type": self.type,
            "source": self.source,
            "time": self.time.isoformat(),
            "sequence": self.sequence,
            "actor": self.actor,
            "title": self.title,
            "body": self.body,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TimelineEvent:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})
