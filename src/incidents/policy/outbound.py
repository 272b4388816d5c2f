"""What a subscriber may receive of an event: deliver whole, deliver redacted, or withhold.

The delivery layer calls ``judge`` for every (event, subscription owner) pair, before signing,
and records every withheld or redacted outcome with ``verdict.rule`` in the delivery log.

1. Visibility (``imvisibility``, against the producer's tenant stamped in ``imtenant``):
   public -> any tenant; internal -> that tenant; restricted -> that tenant and only owners
   with restricted access. Otherwise withheld (rule ``visibility-internal`` /
   ``visibility-restricted``).
2. Clearance: the owner's clearance must cover ``imdataclass``; otherwise withheld (``clearance``).
3. Fields that the type's data schema marks ``x-dataclass`` above the owner's clearance are
   removed, and the delivered event carries ``imredacted`` listing them (``field-clearance``).
"""

from __future__ import annotations

from dataclasses import dataclass

from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.model.types import Extension
from incidents.policy.access import RULE_FIELD_CLEARANCE, Denial, denial
from incidents.policy.redaction import redact, redacted_header


@dataclass(frozen=True)
class Verdict:
    deliver: bool
    event: CloudEvent | None  # what to send (possibly redacted); None when withheld
    redacted: tuple[str, ...] = ()  # JSON pointers of removed fields
    rule: str = ""  # the rule that withheld or redacted; empty when delivered whole
    detail: str = ""  # a readable explanation for the delivery log

    @property
    def reason(self) -> str:
        return f"{self.rule}: {self.detail}" if self.detail else self.rule


def _label(event: CloudEvent, name: str) -> str | None:
    value = event.get(name)
    return None if value is None else str(value)


def event_denial(event: CloudEvent, owner: Principal) -> Denial | None:
    """Why ``owner`` may not see ``event`` at all (visibility, clearance), or None."""
    return denial(
        owner,
        _label(event, Extension.TENANT),
        _label(event, Extension.VISIBILITY),
        _label(event, Extension.DATA_CLASS),
    )


def judge(event: CloudEvent, owner: Principal, registry: SchemaRegistry) -> Verdict:
    """The verdict for sending ``event`` to a subscription owned by ``owner``."""
    denied = event_denial(event, owner)
    if denied is not None:
        return Verdict(False, None, rule=denied.rule, detail=denied.detail)
    data, removed = redact(event.data, registry.marked_fields(event.type), owner.clearance)
    if not removed:
        return Verdict(True, event)
    redacted = event.with_data(data).with_attributes(
        **{Extension.REDACTED: redacted_header(removed)}
    )
    return Verdict(
        True,
        redacted,
        redacted=tuple(removed),
        rule=RULE_FIELD_CLEARANCE,
        detail=f"removed {', '.join(removed)} (above clearance {owner.clearance!r})",
    )
