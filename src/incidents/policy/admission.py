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

from incidents.auth import Principal
from incidents.errors import PolicyDenied
from incidents.model.cloudevent import CloudEvent
from incidents.model.labels import DataClass, Visibility
from incidents.model.types import Extension
from incidents.policy.access import covers
from incidents.policy.rules import Policy

RULE_PUBLISH = "publish-patterns"
RULE_PRODUCER_CLEARANCE = "producer-clearance"


def denied(rule: str, detail: str) -> PolicyDenied:
    return PolicyDenied(f"rule {rule!r}: {detail}", extra={"rule": rule})


class PolicyAdmission:
    """The ``Admission`` the ingest pipeline uses once policy files are loaded."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

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
        default_class, default_visibility = self.policy.default_labels(
            event.type, event.source, tenant, event.data
        )
        # The envelope rules let only known labels in.
        data_class = DataClass.parse(given_class) if given_class is not None else default_class
        visibility = (
            Visibility.parse(given_visibility)
            if given_visibility is not None
            else default_visibility
        )
        for rule in self.policy.matching_rules(event.type, event.source, tenant, event.data):
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
