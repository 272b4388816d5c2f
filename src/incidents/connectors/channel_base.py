"""The delivery channel seam, in the spirit of httpx's transport: a ``Channel`` turns one
delivery into HTTP requests and their responses into an outcome; the dispatcher does the
rest (policy, lanes and ordering, retries, the attempt log, channel state).

A channel is pure: ``render`` and ``classify`` build values and never do I/O, so connectors
are tested without a network. Systems that need more than one request per delivery fit the
same shape, one exchange at a time:

- create a record, then update it: ``render`` POSTs when ``Message.state`` holds no
  external id and PATCHes it otherwise; ``classify`` returns the new id in
  ``Outcome.state``, which is saved per (subscription, incident) with the lane's completion;
- look something up first (a Jira transition): ``render`` returns the GET, and ``classify``
  of its response returns the next ``Request`` (``Request.step`` says which step a response
  answers), up to ``MAX_STEPS`` requests per attempt;
- OAuth: a channel holding no valid token renders the token request first and keeps the
  token it gets (per channel instance, built once per worker process).

Transport failures (refused, timed out, unreachable) never reach ``classify``: the transport
turns them into a failed ``Outcome`` itself.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import orjson

from incidents.errors import FieldError
from incidents.model.cloudevent import CloudEvent

if TYPE_CHECKING:
    from incidents.subscriptions.spec import Spec
    from incidents.subscriptions.subscription import Subscription

MAX_STEPS = 4  # requests one attempt may make (a lookup, a token, the change itself)
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}", re.ASCII)


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"  # the target asked never to be sent to again: the subscription is disabled
    FAILED = "failed"  # retried on the schedule, then dead-lettered
    REFUSED = "refused"  # the connection was refused; retried like a failure
    SKIPPED = "skipped"  # the channel has nothing to send for this event (not an error)


@dataclass(frozen=True)
class ChannelState:
    """What a channel keeps between deliveries of one incident to one subscription."""

    external_id: str | None = None  # the record in the other system (sys_id, issue key, ...)
    data: Mapping[str, str] = field(default_factory=dict)  # anything else the channel needs

    def encoded(self) -> str:
        return orjson.dumps({"external_id": self.external_id, "data": dict(self.data)}).decode()

    @classmethod
    def decode(cls, raw: bytes | str) -> ChannelState:
        found = orjson.loads(raw)
        data = found.get("data") or {}
        return cls(found.get("external_id"), {str(k): str(v) for k, v in data.items()})


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    step: str = ""  # which step of a multi-request exchange this is, for ``classify``


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes  # at most the first BODY_KEPT bytes
    latency_ms: float


REQUEST_KEPT = 1024  # characters of a request body kept in the attempt log


@dataclass(frozen=True)
class SentRequest:
    """What an attempt sent, as the attempt log shows it: no headers (they carry credentials),
    the body's start, and every secret of the subscription replaced by ``***``."""

    method: str
    url: str
    body: str


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    status: int | None = None
    latency_ms: float = 0.0
    error: str = ""
    body: str = ""  # the start of the response body, kept in the attempt log
    retry_after: float | None = None  # seconds the target asked us to wait (429/503)
    state: ChannelState | None = None  # channel state to keep from now on (None: unchanged)
    request: SentRequest | None = None  # the last request of the attempt, when one was made


@dataclass(frozen=True)
class Message:
    """One delivery, as a channel sees it."""

    delivery_id: str  # stable across retries: the webhook-id, an idempotency key
    subscription: Subscription
    event: CloudEvent  # as the subscription's owner may see it (judged, maybe redacted)
    incident: str | None
    state: ChannelState | None  # kept from earlier deliveries of this incident, if any
    now: float  # unix time of the attempt (the dispatcher's clock)
    # The incident document as the owner may read it (``GET /v1/incidents/{id}``: fields above
    # the owner's clearance left out and listed in ``redacted``), for channels that declare
    # ``needs_incident``; None for other channels, events of no incident, or an incident the
    # owner may not see.
    incident_view: Mapping[str, object] | None = None


class Channel(Protocol):
    """How deliveries reach one kind of target (a CloudEvents webhook, an ITSM, a pager)."""

    name: str
    # Whether ``render`` reads ``Message.incident_view``: only then does the dispatcher load
    # the incident (once per lane), so channels that render the event alone cost nothing.
    needs_incident: bool

    def validate(self, spec: Spec) -> Sequence[FieldError]:
        """Problems with this channel's settings in a subscription being registered."""
        ...

    def render(self, message: Message) -> Request | Outcome:
        """The first (often the only) request of an attempt, or at once its outcome when
        there is nothing to send for this event (``OutcomeKind.SKIPPED``: the target system
        has no counterpart for it, say a note for a pager)."""
        ...

    def classify(self, message: Message, request: Request, response: Response) -> Outcome | Request:
        """The attempt's outcome, or the next request to make (multi-step exchanges)."""
        ...


Transport = Callable[[Request], Awaitable["Response | Outcome"]]
"""Sends one request: its response, or a failed Outcome when none came (refused, timed out)."""


def _shown(text: str) -> str:
    return text


async def exchange(
    channel: Channel,
    message: Message,
    transport: Transport,
    mask: Callable[[str], str] = _shown,
) -> Outcome:
    """Make one delivery attempt through ``channel``: render, send, classify, and follow the
    channel's next requests, up to MAX_STEPS. The outcome names the last request sent, with
    ``mask`` applied (it hides the subscription's secrets)."""
    first = channel.render(message)
    if isinstance(first, Outcome):
        return first
    request = first
    spent = 0.0
    for _ in range(MAX_STEPS):
        got = await transport(request)
        if isinstance(got, Outcome):
            return replace(got, request=_sent(request, mask))
        spent += got.latency_ms
        result = channel.classify(message, request, got)
        if isinstance(result, Outcome):
            return replace(result, request=_sent(request, mask))
        request = result
    return Outcome(
        OutcomeKind.FAILED,
        latency_ms=round(spent, 2),
        error=f"the {channel.name} channel asked for more than {MAX_STEPS} requests",
        request=_sent(request, mask),
    )


def _sent(request: Request, mask: Callable[[str], str]) -> SentRequest:
    body = request.body[: REQUEST_KEPT * 4].decode("utf-8", "replace")
    return SentRequest(request.method, mask(request.url), mask(body)[:REQUEST_KEPT])


def retry_after(raw: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date, RFC 9110 10.2.3);
    None for anything else (a value that is not plain ASCII digits or a date is ignored)."""
    if not raw:
        return None
    raw = raw.strip()
    if _DELTA_SECONDS.fullmatch(raw):
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


JSON_UTF8 = "application/json; charset=utf-8"  # what chat webhooks are sent as


def post_json(
    url: str, document: object, step: str = "", content_type: str = "application/json"
) -> Request:
    """A JSON POST, as the webhook-style targets (PagerDuty, Slack, Teams) take it."""
    return Request("POST", url, {"content-type": content_type}, orjson.dumps(document), step=step)


def failed(
    response: Response, now: float, error: str, default_wait: float | None = None
) -> Outcome:
    """The outcome of a refusal (not 2xx): failed, waiting the target's Retry-After when it
    answers 429 or 5xx (``default_wait`` for a 429 without one)."""
    wait = None
    if response.status == 429 or response.status >= 500:
        wait = retry_after(response.headers.get("retry-after"), now)
        if wait is None and response.status == 429:
            wait = default_wait
    body = response.body.decode("utf-8", "replace")
    return Outcome(OutcomeKind.FAILED, response.status, response.latency_ms, error, body, wait)
