"""Policy at the door: who may publish what, default labels, upgrades and rejections.

For each event a producer sends, in order:

1. ``publish-patterns``: the type must match one of the producer's publish patterns (403).
2. ``producer-clearance``: a data class the producer sets must not be above its own
   clearance (403). Upgrades by policy rules are not the producer's doing and are allowed.
3. Defaults from the policy files fill a missing ``imdataclass`` / ``imvisibility``.
4. Every matching rule, in order: ``reject`` refuses the event (403 naming the rule);
   ``require`` raises the labels to at least what it names, never lowers them.
5. The producer's tenant is stamped in the gateway-owned ``imtenant``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from incidents.errors import PolicyDenied
from incidents.model.cloudevent import CloudEvent
from incidents.model.labels import DataClass, Visibility
from incidents.model.principal import Principal
from incidents.model.types import Extension
from incidents.policy.access import covers
from incidents.policy.rules import (
    FALLBACK_DATA_CLASS,
    FALLBACK_VISIBILITY,
    Default,
    Match,
    Policy,
    Rule,
)

RULE_PUBLISH = "publish-patterns"
RULE_PRODUCER_CLEARANCE = "producer-clearance"
# Distinct (type, source, tenant) triples whose matching defaults and rules are remembered;
# sources are the producers' to choose, so the memory is cleared when it fills.
MATCH_CACHE_SIZE = 4096


def denied(rule: str, detail: str) -> PolicyDenied:
    return PolicyDenied(f"rule {rule!r}: {detail}", extra={"rule": rule})


class PolicyAdmission:
    """The ``Admission`` the ingest pipeline uses once policy files are loaded."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._candidates: dict[
            tuple[str, str, str], tuple[_Candidates[Default], _Candidates[Rule]]
        ] = {}

    def _matching(
        self, event_type: str, source: str, tenant: str, data: object
    ) -> tuple[list[Default], list[Rule]]:
        """The defaults and rules that match, in policy order: what ``Policy.default_labels``
        and ``Policy.matching_rules`` look at. Which ones match on type, source and tenant
        is remembered per triple; only conditions on the data are evaluated per event."""
        key = (event_type, source, tenant)
        found = self._candidates.get(key)
        if found is None:
            if len(self._candidates) >= MATCH_CACHE_SIZE:
                self._candidates.clear()
            found = self._candidates[key] = (
                _candidates(self.policy.defaults, key),
                _candidates(self.policy.rules, key),
            )
        defaults, rules = found
        return (
            [d for d, on_data in defaults if on_data is None or on_data.matches("", "", "", data)],
            [r for r, on_data in rules if on_data is None or on_data.matches("", "", "", data)],
        )

    def allows_unknown_type(self, event_type: str) -> bool:
        return False

    def admit(self, event: CloudEvent, principal: Principal) -> CloudEvent:
        if not principal.may_publish(event.type):
            allowed = ", ".join(principal.publish) or "none"
            raise denied(
                RULE_PUBLISH,
                f"principal {principal.name!r} may not publish {event.type!r} "
                f"(its publish patterns: {allowed})",
            )
        given_class = event.get(Extension.DATA_CLASS)
        given_visibility = event.get(Extension.VISIBILITY)
        if given_class is not None and not covers(principal.clearance, str(given_class)):
            raise denied(
                RULE_PRODUCER_CLEARANCE,
                f"principal {principal.name!r} with clearance {principal.clearance!r} may not "
                f"label an event {given_class!r}",
            )
        tenant = principal.tenant
        defaults, rules = self._matching(event.type, event.source, tenant, event.data)
        default_class, default_visibility = _default_labels(defaults)
        # The envelope rules let only known labels in.
        data_class = DataClass.parse(given_class) if given_class is not None else default_class
        visibility = (
            Visibility.parse(given_visibility)
            if given_visibility is not None
            else default_visibility
        )
        for rule in rules:
            if rule.reject is not None:
                raise denied(rule.name, rule.reject)
            if rule.data_class is not None:
                data_class = data_class.stricter(rule.data_class)
            if rule.visibility is not None:
                visibility = visibility.stricter(rule.visibility)
        return event.with_attributes(
            **{
                Extension.DATA_CLASS: data_class.value,
                Extension.VISIBILITY: visibility.value,
                Extension.TENANT: tenant,
            }
        )


_Item = TypeVar("_Item", Default, Rule)
# The items that match on type, source and tenant, each with its conditions on the data.
_Candidates = tuple[tuple[_Item, Match | None], ...]


def _candidates(items: tuple[_Item, ...], key: tuple[str, str, str]) -> _Candidates[_Item]:
    """The items that match ``(type, source, tenant)``, in order, each with a Match holding
    only its data conditions (None when it has none)."""
    found = []
    for item in items:
        match = item.match
        if replace(match, data=()).matches(*key, None):
            found.append((item, Match(data=match.data) if match.data else None))
    return tuple(found)


def _default_labels(matching: list[Default]) -> tuple[DataClass, Visibility]:
    """``Policy.default_labels`` over the defaults known to match: the first that sets each
    label, else ``internal``."""
    data_class: DataClass | None = None
    visibility: Visibility | None = None
    for d in matching:
        data_class = data_class or d.data_class
        visibility = visibility or d.visibility
        if data_class is not None and visibility is not None:
            break
    return data_class or FALLBACK_DATA_CLASS, visibility or FALLBACK_VISIBILITY
