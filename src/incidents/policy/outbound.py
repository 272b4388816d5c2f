"""What a subscriber may receive of an event: deliver whole, deliver redacted, or withhold.

Placeholder until the policy layer lands: it delivers every event unchanged. The delivery
layer calls ``judge`` for every (event, subscription owner) pair and records the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from incidents.auth import Principal
from incidents.ingest.schemas import SchemaRegistry
from incidents.model.cloudevent import CloudEvent


@dataclass(frozen=True)
class Verdict:
    deliver: bool
    event: CloudEvent | None  # what to send (possibly redacted); None when withheld
    redacted: tuple[str, ...] = ()  # JSON pointers of removed fields
    rule: str = ""  # the rule that withheld or redacted; empty when delivered whole

    @property
    def reason(self) -> str:
        return self.rule


def judge(event: CloudEvent, owner: Principal, registry: SchemaRegistry) -> Verdict:
    return Verdict(True, event)
