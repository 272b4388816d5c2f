"""What an attempt's outcome does: the attempt log entry, the delivery's next state (done,
retried on the schedule or after the sink's Retry-After, or dead-lettered), the pause of a
sink that asked for one, and the subscription's failure streak (disabled once it has failed
for ``INCIDENTS_DISABLE_AFTER``). Everything lands in the lane's ``LaneResult``, written when
the lane completes; the time comes from the dispatcher's clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from incidents.connectors.channel_base import Outcome, OutcomeKind
from incidents.delivery.attempt_log import AttemptEntry, iso
from incidents.delivery.lanes import Delivery, DeliveryState, LaneResult
from incidents.delivery.throttle import Throttle
from incidents.model.cloudevent import StoredEvent
from incidents.policy.access import RULE_CLEARANCE
from incidents.policy.outbound import Verdict
from incidents.settings import Settings
from incidents.silences.silence import Silence
from incidents.subscriptions.owner_views import RULE_OWNER_REVOKED
from incidents.subscriptions.spec import SubscriptionStatus
from incidents.subscriptions.subscription import Subscription, SubscriptionStore

MIN_RETRY_AFTER = 1.0  # a Retry-After of 0 still waits this long, so retries cannot spin
# Withheld because the owner may not even know the event exists (another tenant's, or
# restricted): such a delivery is dropped without a trace in the owner's delivery log. Only a
# clearance refusal (or a revoked owner) is logged, as the delivery log's "why".
LOGGED_WITHHOLDING = (RULE_CLEARANCE, RULE_OWNER_REVOKED)


def retry_delay(
    schedule: tuple[float, ...],
    attempt: int,
    asked: float | None,
    rng: random.Random,
    longest: float,
) -> float | None:
    """Seconds until the next try after failed attempt number ``attempt``; None: give up.
    A sink's Retry-After is waited out in full, up to ``longest`` (INCIDENTS_MAX_RETRY_AFTER)."""
    if attempt > len(schedule):
        return None
    if asked is not None:
        return min(max(asked, MIN_RETRY_AFTER), longest)
    return schedule[attempt - 1] * rng.uniform(0.8, 1.2)


class Outcomes:
    def __init__(
        self,
        settings: Settings,
        subs: SubscriptionStore,
        throttle: Throttle,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.subs = subs
        self.throttle = throttle
        self.clock = clock
        self.rng = random.Random()

    async def record(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent,
        verdict: Verdict | None,
        outcome: Outcome,
        sub: Subscription,
    ) -> bool:
        """Record an attempt; False when the lane must wait for this delivery's retry."""
        now = self.clock()
        attempt = record.attempts + 1
        entry = self.entry(record, stored, now, outcome.kind, attempt)
        entry.sent = outcome
        if verdict is not None and verdict.redacted:
            entry.rule, entry.redacted = verdict.rule, tuple(verdict.redacted)
        result.log.append(entry)
        if outcome.kind in (OutcomeKind.DELIVERED, OutcomeKind.SKIPPED):
            if outcome.kind == OutcomeKind.DELIVERED:
                result.healthy.add(sub.id)
                state = DeliveryState.DELIVERED
            else:
                state = DeliveryState.SKIPPED
            result.finished.append(record.id)
            result.records.append(
                replace(
                    record,
                    attempts=attempt,
                    last_code=outcome.status,
                    last_error=outcome.error,
                    state=state,
                    next_at=None,
                )
            )
            return True
        done = replace(record, attempts=attempt, last_code=outcome.status, last_error=outcome.error)
        if outcome.kind == OutcomeKind.GONE:
            await self.subs.set_status(
                sub.id, SubscriptionStatus.DISABLED, outcome.error, utc_time(now)
            )
            self.dead(result, done, outcome.error, now, logged=True)
            return True
        await self._failing(sub, now)
        delay = retry_delay(
            self.settings.retry_schedule,
            attempt,
            outcome.retry_after,
            self.rng,
            self.settings.max_retry_after,
        )
        if delay is not None and outcome.retry_after is not None:
            await self.throttle.pause(sub.id, now + delay)
        if delay is None:
            entry.outcome = DeliveryState.DEAD
            self.dead(result, done, f"retries exhausted; last: {outcome.error}", now, logged=True)
            return True
        entry.next_attempt = now + delay
        result.records.append(replace(done, state=DeliveryState.RETRYING, next_at=now + delay))
        result.due = now + delay
        return False

    @staticmethod
    def entry(
        record: Delivery, stored: StoredEvent | None, now: float, outcome: str, attempt: int
    ) -> AttemptEntry:
        return AttemptEntry(
            subscription=record.sub,
            delivery=record.id,
            sequence=record.seq,
            incident=record.incident or None,
            attempt=attempt,
            time=now,
            outcome=outcome,
            event=None if stored is None else (stored.event.id, stored.event.type),
        )

    def withheld(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent,
        verdict: Verdict,
        now: float,
    ) -> None:
        result.finished.append(record.id)
        if verdict.rule not in LOGGED_WITHHOLDING:
            result.dropped.append(record.id)  # no trace: the owner may not know it exists
            return
        entry = self.entry(record, stored, now, DeliveryState.WITHHELD, record.attempts)
        entry.rule, entry.error = verdict.rule, verdict.reason
        result.log.append(entry)
        withheld = replace(
            record, state=DeliveryState.WITHHELD, reason=verdict.reason, rule=verdict.rule
        )
        result.records.append(replace(withheld, next_at=None))

    def silenced(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent,
        silence: Silence,
        now: float,
    ) -> None:
        """A silence holds the delivery: it is finished, logged as ``silenced`` naming the
        silence, and not sent (the lane goes on with the next event)."""
        result.finished.append(record.id)
        reason = f"held by silence {silence.id}: {silence.comment}"
        entry = self.entry(record, stored, now, DeliveryState.SILENCED, record.attempts)
        entry.silence, entry.error = silence.id, reason
        result.log.append(entry)
        held = replace(record, state=DeliveryState.SILENCED, reason=reason, silence=silence.id)
        result.records.append(replace(held, next_at=None))

    def filter_failed(
        self,
        result: LaneResult,
        record: Delivery,
        stored: StoredEvent | None,
        verdict: Verdict | None,
        now: float,
    ) -> None:
        """Routing found that the subscription's sql filter failed on the event with an
        evaluation error: the delivery is finished and never sent, and logged as
        ``filter_error`` naming the expression and the error; unless the owner may not know
        the event exists (withheld for visibility: no trace, as for any delivery) or it is
        gone (``stored`` or ``verdict`` None)."""
        result.finished.append(record.id)
        hidden = verdict is None or (not verdict.deliver and verdict.rule not in LOGGED_WITHHOLDING)
        if stored is None or hidden:
            result.dropped.append(record.id)
            return
        entry = self.entry(record, stored, now, DeliveryState.FILTER_ERROR, record.attempts)
        entry.error = record.filter_error
        result.log.append(entry)
        failed = replace(record, state=DeliveryState.FILTER_ERROR, reason=record.filter_error)
        result.records.append(replace(failed, next_at=None))

    def dead(
        self, result: LaneResult, record: Delivery, reason: str, now: float, logged: bool = False
    ) -> None:
        if not logged:
            entry = self.entry(record, None, now, DeliveryState.DEAD, record.attempts)
            entry.error = reason
            result.log.append(entry)
        result.finished.append(record.id)
        result.dead.append((record.id, now))
        result.records.append(
            replace(record, state=DeliveryState.DEAD, reason=reason, next_at=None)
        )

    async def _failing(self, sub: Subscription, now: float) -> None:
        """Note a failure; disable the subscription once it has failed for disable_after."""
        first = await self.subs.note_failure(sub.id, now)
        if first is not None and now - first >= self.settings.disable_after:
            reason = f"failing continuously since {iso(first)} (INCIDENTS_DISABLE_AFTER)"
            await self.subs.set_status(sub.id, SubscriptionStatus.DISABLED, reason, utc_time(now))


def utc_time(ts: float) -> datetime:
    """A unix time (the dispatcher's clock) as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)
