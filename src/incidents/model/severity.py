from __future__ import annotations

import re
from enum import StrEnum

_ALIAS = re.compile(r"^\s*(?:sev|p)[-_ ]?([1-4])\s*$", re.IGNORECASE)


class Severity(StrEnum):
    """How bad an incident is. Output is always canonical (``SEV1``)."""

    SEV1 = "SEV1"  # critical: complete outage
    SEV2 = "SEV2"  # major impairment
    SEV3 = "SEV3"  # minor
    SEV4 = "SEV4"  # cosmetic

    @classmethod
    def parse(cls, raw: object) -> Severity:
        """Accept ``SEV1``, ``SEV-1``, ``sev1``, ``P1`` (and so on); raise ValueError otherwise."""
        if isinstance(raw, Severity):
            return raw
        if isinstance(raw, str) and (match := _ALIAS.match(raw)):
            return cls("SEV" + match.group(1))
        raise ValueError(f"{raw!r} is not a severity (expected SEV1..SEV4, SEV-1, sev1 or P1)")

    @property
    def rank(self) -> int:
        """1 for SEV1 (worst) to 4 for SEV4."""
        return int(self.value[3])


SEVERITY_PATTERN = _ALIAS.pattern
