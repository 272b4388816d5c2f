"""An alert as the gateway keeps it: one per (tenant, correlation key), reopened as a new
``number`` when it triggers again after resolving."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from incidents.model.labels import DataClass, Visibility

AlertStatus = Literal["firing", "acknowledged", "resolved"]
# Labels that name the service an alert is about, most specific first.
SERVICE_LABELS = ("service", "app", "job", "namespace")
ALERT_STATUSES: tuple[AlertStatus, ...] = ("firing", "acknowledged", "resolved")


@dataclass(frozen=True)
class Alert:
    key: str
    tenant: str
    number: int
    status: AlertStatus
    summary: str
    severity: str
    source: str
    first_seen: str
    last_seen: str
    count: int = 1
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    incident: str | None = None
    source_url: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    links: list[Any] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    data_class: str = DataClass.INTERNAL.value
    visibility: str = Visibility.INTERNAL.value
    last_event: str = ""

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    @property
    def service(self) -> str:
        """The service its labels name ("" when none does)."""
        return service_of(self.labels)

    def evolve(self, **changes: Any) -> Alert:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = dict(self.labels)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Alert:
        return cls(**{k: v for k, v in raw.items() if k in _ALERT_NAMES})


# Computed once: from_dict runs for every alert event.
_ALERT_NAMES = frozenset(f.name for f in fields(Alert))


def strings(raw: object) -> dict[str, str]:
    """A label-like mapping with every key and value as a string ({} when not a mapping)."""
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def service_of(labels: Mapping[str, str]) -> str:
    """The service a label set names (``SERVICE_LABELS``, first found); "" when none."""
    return next((labels[k] for k in SERVICE_LABELS if labels.get(k)), "")
