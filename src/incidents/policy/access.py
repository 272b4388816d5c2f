"""Who may see what: the one rule that delivery and the read APIs both apply.

An event (or incident) carries the producer's tenant, a visibility and a data class. A
principal sees it when the visibility admits the principal's tenant (and restricted access,
for ``restricted``) and the principal's clearance covers the data class. Admins see across
tenants, but their clearance and restricted access still apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from incidents.model.labels import DataClass, Visibility
from incidents.model.principal import Principal

# Rule names, as recorded in the delivery log and returned in problem details.
RULE_VISIBILITY_INTERNAL = "visibility-internal"
RULE_VISIBILITY_RESTRICTED = "visibility-restricted"
RULE_CLEARANCE = "clearance"
RULE_FIELD_CLEARANCE = "field-clearance"
RULE_UNKNOWN_LABEL = "unknown-label"


def covers(clearance: str, data_class: str) -> bool:
    """Whether a clearance covers a data class (unknown labels are never covered)."""
    have, need = DataClass.rank_of(clearance), DataClass.rank_of(data_class)
    return have is not None and need is not None and have >= need


@dataclass(frozen=True)
class Denial:
    """Why a principal may not see something: a stable rule name and a readable detail."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


def denial(
    principal: Principal, tenant: str | None, visibility: str | None, data_class: str | None
) -> Denial | None:
    """The first rule that hides an item from ``principal``, or None if it may see it.

    Missing labels mean ``internal`` (the gateway stamps labels on everything it accepts, so
    this only matters for data written by hand); labels outside the vocabulary hide the item.
    """
    visibility = visibility or Visibility.INTERNAL.value
    data_class = data_class or DataClass.INTERNAL.value
    if Visibility.rank_of(visibility) is None or DataClass.rank_of(data_class) is None:
        return Denial(
            RULE_UNKNOWN_LABEL,
            f"labels visibility={visibility!r} dataclass={data_class!r} are not understood",
        )
    same_tenant = principal.is_admin or (tenant is not None and tenant == principal.tenant)
    if visibility == Visibility.INTERNAL and not same_tenant:
        return Denial(
            RULE_VISIBILITY_INTERNAL,
            f"internal to tenant {tenant!r}; {principal.name!r} is in {principal.tenant!r}",
        )
    if visibility == Visibility.RESTRICTED:
        if not same_tenant:
            return Denial(
                RULE_VISIBILITY_RESTRICTED,
                f"restricted to tenant {tenant!r}; {principal.name!r} is in {principal.tenant!r}",
            )
        if not principal.restricted:
            return Denial(
                RULE_VISIBILITY_RESTRICTED,
                f"restricted; {principal.name!r} has no restricted access",
            )
    if not covers(principal.clearance, data_class):
        return Denial(
            RULE_CLEARANCE,
            f"data class {data_class!r} is above the clearance {principal.clearance!r} "
            f"of {principal.name!r}",
        )
    return None


def may_see(
    principal: Principal, tenant: str | None, visibility: str | None, data_class: str | None
) -> bool:
    return denial(principal, tenant, visibility, data_class) is None
