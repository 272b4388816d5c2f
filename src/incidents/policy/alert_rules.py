"""Alert rules: the ``alerts`` section of the policy files in ``policies/`` (read, like the
rest of those files, by ``incidents.policy.files``; this module holds the values).

alerts:
  declare_incident_at: SEV1   # an opening alert this bad declares an incident; or "never"
  default_severity: SEV3      # when a tool's severity label is missing or unknown
  severity_map:               # a tool's severity label -> SEV1..SEV4
    critical: SEV1
  grafana_signing:            # per producer (principal name): X-Grafana-Alerting-Signature
    grafana-prod: {secret: "...", timestamp_header: X-Grafana-Alerting-Signature-Timestamp}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from incidents.model.severity import Severity

DEFAULT_SEVERITY_MAP: Mapping[str, Severity] = MappingProxyType(
    {
        "critical": Severity.SEV1,
        "crit": Severity.SEV1,
        "fatal": Severity.SEV1,
        "emergency": Severity.SEV1,
        "page": Severity.SEV1,
        "high": Severity.SEV2,
        "major": Severity.SEV2,
        "error": Severity.SEV2,
        "warning": Severity.SEV3,
        "warn": Severity.SEV3,
        "medium": Severity.SEV3,
        "minor": Severity.SEV3,
        "low": Severity.SEV4,
        "info": Severity.SEV4,
        "informational": Severity.SEV4,
        "none": Severity.SEV4,
    }
)
NEVER = ("never", "none", "off", "false")
_SIGNING_KEYS = ("secret", "header", "timestamp_header", "max_age")


class AlertRulesError(ValueError):
    """The ``alerts`` section is not usable. ``key`` is the path inside the section (e.g.
    ``("grafana_signing", "prod", "max_age")``), so a reader of the files can name the line."""

    def __init__(self, key: tuple[str, ...], reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"{self.field}: {reason}" if key else reason)

    @property
    def field(self) -> str:
        return ".".join(("alerts", *self.key))


@dataclass(frozen=True)
class GrafanaSigning:
    secret: str
    header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str = ""
    max_age: float = 300.0


@dataclass(frozen=True)
class AlertRules:
    declare_incident_at: Severity | None = Severity.SEV1
    default_severity: Severity = Severity.SEV3
    severity_map: Mapping[str, Severity] = field(default_factory=lambda: DEFAULT_SEVERITY_MAP)
    grafana_signing: Mapping[str, GrafanaSigning] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def severity_of(self, label: object) -> Severity:
        """A monitoring tool's severity label as SEV1..SEV4 (the default when unknown)."""
        if isinstance(label, str):
            mapped = self.severity_map.get(label.strip().lower())
            if mapped is not None:
                return mapped
            try:
                return Severity.parse(label)
            except ValueError:
                pass
        return self.default_severity

    def declares(self, severity: Severity) -> bool:
        limit = self.declare_incident_at
        return limit is not None and severity.rank <= limit.rank

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> AlertRules:
        """The rules from the merged ``alerts`` sections; AlertRulesError names a bad key."""

        def severity(key: tuple[str, ...], raw: object) -> Severity:
            try:
                return Severity.parse(raw)
            except ValueError as exc:
                raise AlertRulesError(key, str(exc)) from None

        rules: dict[str, Any] = {}
        known = ("declare_incident_at", "default_severity", "severity_map", "grafana_signing")
        unknown = sorted(str(k) for k in section if k not in known)
        if unknown:
            raise AlertRulesError(
                (unknown[0],), f"is not a known alert rule (known: {', '.join(sorted(known))})"
            )
        if "declare_incident_at" in section:
            raw = section["declare_incident_at"]
            never = raw is None or raw is False or (isinstance(raw, str) and raw.lower() in NEVER)
            rules["declare_incident_at"] = (
                None if never else severity(("declare_incident_at",), raw)
            )
        if "default_severity" in section:
            rules["default_severity"] = severity(("default_severity",), section["default_severity"])
        if "severity_map" in section:
            raw_map = section["severity_map"]
            if not isinstance(raw_map, dict):
                raise AlertRulesError(("severity_map",), "must map labels to severities")
            merged = dict(DEFAULT_SEVERITY_MAP)
            merged.update(
                {
                    str(k).strip().lower(): severity(("severity_map", str(k)), v)
                    for k, v in raw_map.items()
                }
            )
            rules["severity_map"] = MappingProxyType(merged)
        if "grafana_signing" in section:
            rules["grafana_signing"] = _grafana_signing(section["grafana_signing"])
        return cls(**rules)


def _grafana_signing(raw: object) -> Mapping[str, GrafanaSigning]:
    if not isinstance(raw, dict):
        raise AlertRulesError(("grafana_signing",), "must map producers to secrets")
    signing = {}
    for producer, conf in raw.items():
        key = ("grafana_signing", str(producer))
        if not isinstance(conf, dict) or not isinstance(conf.get("secret"), str):
            raise AlertRulesError(key, "needs a 'secret' string")
        unknown = sorted(str(k) for k in conf if k not in _SIGNING_KEYS)
        if unknown:
            raise AlertRulesError((*key, unknown[0]), f"is not one of {', '.join(_SIGNING_KEYS)}")
        for name in ("header", "timestamp_header"):
            if name in conf and not isinstance(conf[name], str):
                raise AlertRulesError((*key, name), f"{conf[name]!r} is not a header name")
        max_age = conf.get("max_age", GrafanaSigning.max_age)
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
            raise AlertRulesError((*key, "max_age"), f"{max_age!r} is not a number of seconds")
        signing[str(producer)] = GrafanaSigning(
            secret=conf["secret"],
            header=conf.get("header") or GrafanaSigning.header,
            timestamp_header=conf.get("timestamp_header") or "",
            max_age=float(max_age),
        )
    return MappingProxyType(signing)
