"""W3C Trace Context (``traceparent``/``tracestate``), as the CloudEvents distributed-tracing
extension carries it: parsed, checked, kept with an event, and continued by each delivery.

An invalid ``traceparent`` is ignored, as the W3C spec asks (a receiver that cannot parse
it starts afresh; it never refuses the request): the event is accepted and stored without it.
An invalid ``tracestate`` is dropped and the ``traceparent`` kept. The request's
``traceparent`` header applies to the events that carry no valid attribute of their own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from incidents.model.cloudevent import CloudEvent

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
HEADERS = (TRACEPARENT.encode(), TRACESTATE.encode())

# version "00" is exactly 55 characters; a later version may add fields after a dash
# (read as version 00, W3C Trace Context 4.3). Version ff is invalid.
_PARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
# tracestate list-member: key "=" value (W3C Trace Context 3.3.1.3)
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(_KEY + "=" + _VALUE, re.ASCII)
MAX_MEMBERS = 32

# The trace context of the request being handled (its header, or the server span that
# started a trace); set by ``tracing.middleware`` for each HTTP request, read by the ingestor.
incoming: ContextVar[TraceContext | None] = ContextVar("incidents_incoming_trace", default=None)


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lower-case hex digits, not all zero
    span_id: str  # 16 lower-case hex digits, not all zero (the parent of what continues it)
    flags: str = "00"  # 01: sampled
    state: str = ""  # the tracestate, "" when none

    @classmethod
    def parse(cls, traceparent: object, tracestate: object = None) -> TraceContext | None:
        """The context a ``traceparent`` (and ``tracestate``) give, or None when the
        traceparent is not valid; an invalid tracestate is dropped."""
        if not isinstance(traceparent, str):
            return None
        found = _PARENT.fullmatch(traceparent.strip())
        if found is None:
            return None
        version, trace_id, span_id, flags, rest = found.groups()
        if version == "ff" or (version == "00" and rest is not None):
            return None
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        if version != "00":
            flags = f"{int(flags, 16) & 1:02x}"  # only the sampled flag is known
        return cls(trace_id, span_id, flags, valid_tracestate(tracestate))

    @classmethod
    def new(cls, sampled: bool = False) -> TraceContext:
        return cls(secrets.token_hex(16), secrets.token_hex(8), "01" if sampled else "00")

    @classmethod
    def derived(cls, source: str, event_id: str) -> TraceContext:
        """The trace of an event that came with none, while no spans are exported: one trace
        per event, the same for every delivery and retry of it, read off its (source, id)."""
        digest = hashlib.sha256(f"{source}\x00{event_id}".encode()).hexdigest()
        return cls(digest[:32], digest[32:48])

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return int(self.flags, 16) & 1 == 1

    def child(self) -> TraceContext:
        """A context for a new span of this trace, under this one."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags, self.state)

    def headers(self) -> dict[str, str]:
        found = {TRACEPARENT: self.traceparent}
        if self.state:
            found[TRACESTATE] = self.state
        return found


def valid_tracestate(raw: object) -> str:
    """``raw`` as a tracestate header value (spaces around members removed, empty members
    dropped), or "" when it is not a valid one."""
    if not isinstance(raw, str) or not raw.strip():
        return ""
    members = [m.strip() for m in raw.split(",")]
    members = [m for m in members if m]
    if len(members) > MAX_MEMBERS or not all(_MEMBER.fullmatch(m) for m in members):
        return ""
    keys = [m.split("=", 1)[0] for m in members]
    if len(set(keys)) != len(keys):
        return ""
    return ",".join(members)


def from_headers(headers: Sequence[tuple[bytes, bytes]]) -> TraceContext | None:
    """The request's trace context (W3C headers); several ``tracestate`` headers are one
    list, several ``traceparent`` headers make it invalid."""
    parents: list[bytes] = []
    states: list[bytes] = []
    for name, value in headers:
        if len(name) == 11 or len(name) == 10:
            lowered = name.lower()
            if lowered == HEADERS[0]:
                parents.append(value)
            elif lowered == HEADERS[1]:
                states.append(value)
    if len(parents) != 1:
        return None
    state = ",".join(s.decode("latin-1") for s in states) if states else None
    return TraceContext.parse(parents[0].decode("latin-1"), state)


def of_event(event: CloudEvent) -> TraceContext | None:
    """The trace context an event carries (its distributed-tracing attributes), if valid."""
    raw = event.attributes.get(TRACEPARENT)
    if raw is None:
        return None
    return TraceContext.parse(raw, event.attributes.get(TRACESTATE))


def kept(event: CloudEvent, request: TraceContext | None) -> CloudEvent:
    """The event as it is stored: its own valid trace context, else the request's (when
    there is one), never an invalid one."""
    attrs = event.attributes
    if TRACEPARENT not in attrs and TRACESTATE not in attrs and request is None:
        return event  # the common case: nothing to look at
    own = of_event(event)
    use = own if own is not None else request
    if use is None:
        return event.with_attributes(traceparent=None, tracestate=None)
    if attrs.get(TRACEPARENT) == use.traceparent and attrs.get(TRACESTATE) == (use.state or None):
        return event
    return event.with_attributes(traceparent=use.traceparent, tracestate=use.state or None)


def of_stored(event: CloudEvent) -> TraceContext:
    """The trace an accepted event's deliveries continue: the one kept with it, else one
    derived from its (source, id)."""
    return of_event(event) or TraceContext.derived(event.source, event.id)


def delivered(event: CloudEvent, context: TraceContext) -> CloudEvent:
    """The event as one delivery sends it: carrying that delivery's own trace context."""
    return event.with_attributes(traceparent=context.traceparent, tracestate=context.state or None)
