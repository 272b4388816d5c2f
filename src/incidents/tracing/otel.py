"""Spans recorded with the OpenTelemetry SDK and sent over OTLP/HTTP by a batch processor
(its own thread): imported only when export is on (``tracing.span_export``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from incidents.tracing.context import TraceContext
from incidents.tracing.spans import Attributes, Kind, NoSpan, Span, Value

_KINDS = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
}


def _context(span: trace.Span) -> TraceContext | None:
    found = span.get_span_context()
    if not found.is_valid:
        return None
    state = found.trace_state.to_header() if found.trace_state else ""
    return TraceContext(
        f"{found.trace_id:032x}", f"{found.span_id:016x}", f"{int(found.trace_flags):02x}", state
    )


def _parent(parent: TraceContext) -> Context:
    remote = SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
        trace_state=TraceState.from_header([parent.state]) if parent.state else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def _sampled(parent: TraceContext | None) -> bool:
    """Whether the span's parent (the current span, when none is given) is sampled; a span
    with no parent at all is a root, which the sampler decides on."""
    if parent is not None:
        return parent.sampled
    current = trace.get_current_span().get_span_context()
    return not current.is_valid or bool(current.trace_flags.sampled)


class _Recorded:
    def __init__(self, span: trace.Span) -> None:
        self.span = span

    @property
    def context(self) -> TraceContext | None:
        return _context(self.span)

    def set(self, name: str, value: Value) -> None:
        self.span.set_attribute(name, value)

    def rename(self, name: str) -> None:
        self.span.update_name(name)

    def fail(self, description: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, description))


class OtelSpans:
    enabled = True

    def __init__(self, endpoint: str, service: str, environ: Mapping[str, str]) -> None:
        self.endpoint = endpoint
        self.service = service
        self.environ = environ
        # With a parent-based sampler (the default), a span under an unsampled parent is
        # never recorded, so none is made.
        sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
        self._by_parent = sampler.startswith("parentbased_")
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    def open(self) -> None:
        if self._provider is not None:
            return
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the SDK; the process's
        # own name is the default.
        named = {} if self.environ.get("OTEL_SERVICE_NAME") else {"service.name": self.service}
        provider = TracerProvider(resource=Resource.create(named), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.endpoint)))
        self._provider = provider
        self._tracer = provider.get_tracer("incidents")

    def close(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # sends what is batched
            self._provider = self._tracer = None

    def start(
        self,
        name: str,
        *,
        parent: TraceContext | None = None,
        kind: Kind = "internal",
        attributes: Attributes | None = None,
        start_ns: int | None = None,
    ) -> AbstractContextManager[Span]:
        return self._start(name, parent, kind, attributes, start_ns)

    @contextmanager
    def _start(
        self,
        name: str,
        parent: TraceContext | None,
        kind: Kind,
        attributes: Attributes | None,
        start_ns: int | None,
    ) -> Iterator[Span]:
        tracer = self._tracer
        if tracer is None or (self._by_parent and not _sampled(parent)):
            # Not recorded: skipped rather than made (a span the sampler drops still costs
            # ids, a context and the sampler); the caller continues the trace by itself.
            yield NoSpan()
            return
        with tracer.start_as_current_span(
            name,
            context=_parent(parent) if parent is not None else None,
            kind=_KINDS[kind],
            attributes=attributes,
            start_time=start_ns,
        ) as span:
            yield _Recorded(span)

    def current(self) -> TraceContext | None:
        return _context(trace.get_current_span())
