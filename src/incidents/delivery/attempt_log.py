"""The attempt log: one entry per delivery attempt (or withholding, or dead-lettering), kept
newest first per subscription (``incidents:sub:<id>:attempts``) and shown as
``GET /v1/subscriptions/{id}/deliveries``.

An entry is stored as JSON. Which keys it has tells what happened: ``event_id`` and ``type``
when the event was known; ``status_code``, ``latency_ms``, ``error``, ``response`` and
``request`` (method, URL and the start of the body, secrets masked) when a request was made;
``rule`` (and ``redacted``) when policy withheld or redacted the event; ``silence`` (the
silence's id) when a silence held it (outcome ``silenced``). An entry with the outcome
``filter_error`` (the subscription's ``sql`` filter failed on the event with an evaluation
error, so it was not sent) names the expression and the error in ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from incidents.connectors.channel_base import Outcome


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class AttemptEntry:
    subscription: str  # whose log it goes to (not part of the entry)
    delivery: str
    sequence: int
    incident: str | None
    attempt: int
    time: float
    outcome: str  # an OutcomeKind, or a DeliveryState: withheld, silenced, filter_error, dead
    event: tuple[str, str] | None = None  # (event id, type), when the event is known
    sent: Outcome | None = None  # what the request got, when one was made
    error: str | None = None
    next_attempt: float | None = None
    rule: str | None = None
    redacted: tuple[str, ...] = field(default=())
    silence: str | None = None  # the silence that held it

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "delivery": self.delivery,
            "webhook_id": self.delivery,
            "sequence": self.sequence,
        }
        when = None if self.next_attempt is None else iso(self.next_attempt)
        if self.event is None:  # dead-lettered without being tried
            out.update(incident=self.incident, attempt=self.attempt, time=iso(self.time))
            out.update(outcome=str(self.outcome), error=self.error, next_attempt=when)
            return out
        out["event_id"], out["type"] = self.event
        out.update(incident=self.incident, attempt=self.attempt, time=iso(self.time))
        out.update(outcome=str(self.outcome), next_attempt=when)
        if self.silence is not None:  # held by a silence
            out.update(silence=self.silence, error=self.error)
            return out
        if self.sent is None:  # withheld by policy
            out.update(rule=self.rule, error=self.error)
            return out
        out.update(
            status_code=self.sent.status,
            latency_ms=self.sent.latency_ms,
            error=self.sent.error or None,
            response=self.sent.body or None,
        )
        if (request := self.sent.request) is not None:
            out["request"] = {"method": request.method, "url": request.url, "body": request.body}
        if self.rule is not None:  # sent redacted
            out.update(rule=self.rule, redacted=list(self.redacted))
        return out

    def encoded(self) -> str:
        return orjson.dumps(self.to_dict()).decode()
