"""What became of one event for each subscription (``GET /v1/events/{id}/routes``).

For every subscription, in order, the first of these that applies:

- ``not_routed``: the event is kept on the timeline only (a repeat of an open alert, an ack
  with nothing to acknowledge), so it went to nobody;
- ``not_matched``: its type pattern, source or a filter (named by index and expression, and
  with the error when an ``sql`` expression in it failed on the event) does not admit the
  event, or the event came in through that subscription's own system;
- then the delivery routing queued for it (``routed_id``), by its state: ``queued`` (pending
  or retrying), ``delivered``, ``skipped`` (its channel had nothing to send), ``withheld``
  (with the policy rule), ``silenced`` (with the silence) or ``dead_lettered``; or
  ``not_matched`` when its sql filter failed on the event with an error as it was then
  (``filter_error``: logged, not sent);
- with no delivery: ``withheld`` when policy withholds it from the owner now (a delivery
  withheld for visibility leaves no record), else ``not_routed``: the subscription is newer
  than the event, the event is not routed yet, or the subscription did not match it when it
  was routed.

Matching is judged on the subscription as it is now, not as it was when the event was
routed: the answer says so (``judged_on``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from incidents.delivery.lanes import Delivery, DeliveryState, DeliveryStore, routed_id
from incidents.model.cloudevent import StoredEvent
from incidents.model.filters import AllOf, Filter, parse_filters, sql_failure
from incidents.model.origin import came_from
from incidents.model.type_patterns import any_type_matches
from incidents.silences.silence import Silence
from incidents.subscriptions.owner_views import OwnerViews
from incidents.subscriptions.subscription import Subscription

JUDGED_ON = (
    "each subscription as it is now (its types, source, filters and owner): one changed since "
    "the event was routed may be judged differently than it was then"
)


class Fate(StrEnum):
    NOT_ROUTED = "not_routed"
    NOT_MATCHED = "not_matched"
    WITHHELD = "withheld"
    SILENCED = "silenced"
    QUEUED = "queued"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"


_BY_STATE = {
    DeliveryState.PENDING: Fate.QUEUED,
    DeliveryState.RETRYING: Fate.QUEUED,
    DeliveryState.DELIVERED: Fate.DELIVERED,
    DeliveryState.SKIPPED: Fate.SKIPPED,
    DeliveryState.WITHHELD: Fate.WITHHELD,
    DeliveryState.SILENCED: Fate.SILENCED,
    DeliveryState.DEAD: Fate.DEAD_LETTERED,
    DeliveryState.FILTER_ERROR: Fate.NOT_MATCHED,  # its sql filter failed when routed
}


@dataclass(frozen=True)
class Route:
    """What became of the event for one subscription."""

    subscription: str
    fate: Fate
    reason: str
    failed: dict[str, Any] | None = None  # what did not match: types, source, filter, origin
    rule: str | None = None  # the policy rule that withheld it
    silence: str | None = None  # the silence that held it (or will, while it is queued)
    delivery: Delivery | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "subscription": self.subscription,
            "route": str(self.fate),
            "reason": self.reason,
        }
        if self.failed is not None:
            out["failed"] = self.failed
        if self.rule is not None:
            out["rule"] = self.rule
        if self.silence is not None:
            out["silence"] = self.silence
        if (d := self.delivery) is not None:
            out["delivery"] = {
                "id": d.id,
                "state": str(d.state),
                "attempts": d.attempts,
                "next_attempt": d.next_at,
                "last_status_code": d.last_code,
                "last_error": d.last_error or None,
            }
        return out


def _filters(sub: Subscription) -> list[Filter]:
    """The subscription's filters one by one (the compiled ones when they line up)."""
    compiled = sub.filter
    if isinstance(compiled, AllOf) and len(compiled.parts) == len(sub.spec.filters):
        return list(compiled.parts)
    return [parse_filters([expression])[0] for expression in sub.spec.filters]


def unmatched(stored: StoredEvent, sub: Subscription) -> Route | None:
    """Why ``sub`` (as it is now) does not want the event; None when it does."""
    event, spec = stored.event, sub.spec
    if spec.types and not any_type_matches(spec.types, event.type):
        why = f"type {event.type!r} matches none of the subscription's types"
        return Route(sub.id, Fate.NOT_MATCHED, why, failed={"types": list(spec.types)})
    if spec.source is not None and event.source != spec.source:
        why = f"source {event.source!r} is not the subscription's source"
        return Route(sub.id, Fate.NOT_MATCHED, why, failed={"source": spec.source})
    for i, compiled in enumerate(_filters(sub)):
        if not compiled.matches(event.attributes):
            why = f"filter {i} does not match the event"
            failed: dict[str, Any] = {"filter": i, "expression": spec.filters[i]}
            if (error := sql_failure(compiled, event.attributes)) is not None:
                why, failed["error"] = f"{why}: {error}", error
            return Route(sub.id, Fate.NOT_MATCHED, why, failed=failed)
    if came_from(event, sub.id):
        why = "the event came in through this subscription's system; it is never sent back"
        return Route(sub.id, Fate.NOT_MATCHED, why, failed={"origin": sub.id})
    return None


def _from_record(sub: Subscription, record: Delivery, holding: Silence | None) -> Route:
    if record.filter_error:  # its sql filter failed when routed (it matches as it is now)
        why = f"when the event was routed, {record.filter_error}"
        return Route(sub.id, Fate.NOT_MATCHED, why, failed={"error": record.filter_error},
                     delivery=record)  # fmt: skip
    fate = _BY_STATE[record.state]
    if fate is Fate.SILENCED:
        return Route(sub.id, fate, record.reason, silence=record.silence or None, delivery=record)
    if fate is Fate.WITHHELD:
        return Route(sub.id, fate, record.reason, rule=record.rule or None, delivery=record)
    if fate is Fate.DEAD_LETTERED:
        why = record.reason or record.last_error or "retries ran out"
        return Route(sub.id, fate, why, delivery=record)
    if fate is Fate.QUEUED:
        why = "waiting in its lane" if record.state is DeliveryState.PENDING else "retrying"
        if holding is not None:
            why += f"; silence {holding.id} holds it while it is active"
        silence = holding.id if holding is not None else None
        return Route(sub.id, fate, why, silence=silence, delivery=record)
    why = "sent and accepted" if fate is Fate.DELIVERED else "its channel had nothing to send"
    return Route(sub.id, fate, why, delivery=record)


async def explain(
    stored: StoredEvent,
    subs: Sequence[Subscription],
    ledger: DeliveryStore,
    owners: OwnerViews,
    silences: Sequence[Silence],
    now: datetime,
    routed_through: int,
) -> list[Route]:
    """What became of ``stored`` for each of ``subs`` (see the module's docstring);
    ``routed_through``: the sequence up to which events are routed."""
    event = stored.event
    if not stored.plan.fanout:
        outcome = stored.plan.alert.outcome if stored.plan.alert is not None else None
        why = "the event is kept on the timeline only, not sent to anyone" + (
            f" (alert {outcome})" if outcome is not None else ""
        )
        return [Route(s.id, Fate.NOT_ROUTED, why) for s in subs]
    wanted = {s.id: routed_id(stored.sequence, s.id, event.source, event.id) for s in subs}
    records = await ledger.records(list(wanted.values()))
    out = []
    for sub in subs:
        refused = unmatched(stored, sub)
        if refused is not None:
            out.append(refused)
            continue
        holding = next((s for s in silences if s.holds(sub.id, event.attributes, now)), None)
        record = records.get(wanted[sub.id])
        if record is not None:
            out.append(_from_record(sub, record, holding))
            continue
        verdict = await owners.judge(stored, sub)
        if not verdict.deliver:
            out.append(Route(sub.id, Fate.WITHHELD, verdict.reason, rule=verdict.rule))
            continue
        if sub.created_at and datetime.fromisoformat(sub.created_at) > stored.ingested_at:
            why = "the subscription was created after the event was accepted"
        elif stored.sequence > routed_through:
            why = "the event is not routed yet"
        elif not sub.active:
            why = f"the subscription is disabled ({sub.reason})"
        else:
            why = (
                "the subscription did not match the event when it was routed (it has changed since)"
            )
        out.append(Route(sub.id, Fate.NOT_ROUTED, why))
    return out
