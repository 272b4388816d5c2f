"""Alert rules read from the ``alerts`` section of the policy files in ``policies/``.

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
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

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


class AlertRulesError(ValueError):
    """The ``alerts`` section of a policy file is not usable; the message names file and key."""


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
    def load(cls, directory: Path) -> AlertRules:
        """The rules from every ``*.yaml``/``*.yml`` in ``directory`` that has an ``alerts``
        section (later files override earlier ones, by name order); defaults otherwise."""
        section: dict[str, Any] = {}
        where: dict[str, Path] = {}
        if directory.is_dir():
            for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
                try:
                    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
                except (OSError, yaml.YAMLError) as exc:
                    raise AlertRulesError(f"policy file {path} cannot be read: {exc}") from exc
                alerts = doc.get("alerts") if isinstance(doc, dict) else None
                if alerts is None:
                    continue
                if not isinstance(alerts, dict):
                    raise AlertRulesError(f"{path}: 'alerts' must be a mapping")
                for key, value in alerts.items():
                    section[key] = value
                    where[key] = path
        return cls.from_mapping(section, where)

    @classmethod
    def from_mapping(
        cls, section: Mapping[str, Any], where: Mapping[str, Path] | None = None
    ) -> AlertRules:
        def place(key: str) -> str:
            path = (where or {}).get(key)
            return f"{path}: alerts.{key}" if path else f"alerts.{key}"

        def severity(key: str, raw: object) -> Severity:
            try:
                return Severity.parse(raw)
            except ValueError as exc:
                raise AlertRulesError(f"{place(key)}: {exc}") from None

        rules: dict[str, Any] = {}
        known = {"declare_incident_at", "default_severity", "severity_map", "grafana_signing"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise AlertRulesError(
                f"{place(unknown[0])} is not a known alert rule (known: {', '.join(sorted(known))})"
            )
        if "declare_incident_at" in section:
            raw = section["declare_incident_at"]
            never = raw is None or raw is False or (isinstance(raw, str) and raw.lower() in NEVER)
            rules["declare_incident_at"] = None if never else severity("declare_incident_at", raw)
        if "default_severity" in section:
            rules["default_severity"] = severity("default_severity", section["default_severity"])
        if "severity_map" in section:
            raw_map = section["severity_map"]
            if not isinstance(raw_map, dict):
                raise AlertRulesError(f"{place('severity_map')} must map labels to severities")
            merged = dict(DEFAULT_SEVERITY_MAP)
            merged.update(
                {str(k).strip().lower(): severity("severity_map", v) for k, v in raw_map.items()}
            )
            rules["severity_map"] = MappingProxyType(merged)
        if "grafana_signing" in section:
            raw_sign = section["grafana_signing"]
            if not isinstance(raw_sign, dict):
                raise AlertRulesError(f"{place('grafana_signing')} must map producers to secrets")
            signing = {}
            for producer, conf in raw_sign.items():
                if not isinstance(conf, dict) or not isinstance(conf.get("secret"), str):
                    raise AlertRulesError(
                        f"{place('grafana_signing')}.{producer} needs a 'secret' string"
                    )
                signing[str(producer)] = GrafanaSigning(
                    secret=conf["secret"],
                    header=str(conf.get("header") or GrafanaSigning.header),
                    timestamp_header=str(conf.get("timestamp_header") or ""),
                    max_age=float(conf.get("max_age", GrafanaSigning.max_age)),
                )
            rules["grafana_signing"] = MappingProxyType(signing)
        return cls(**rules)
