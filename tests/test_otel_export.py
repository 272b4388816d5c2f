"""OpenTelemetry export: off unless the standard OTEL_* settings ask for it; on, a real
OTLP/HTTP receiver (decoding ``ExportTraceServiceRequest`` with ``opentelemetry-proto``) gets
one trace from the producer's request through acceptance and routing to the delivery, with
the trace id the subscriber received in ``traceparent``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.settings import Settings
from incidents.tracing.context import TraceContext
from incidents.tracing.span_export import spans_from_environ, traces_endpoint
from incidents.tracing.spans import NoSpans
from tests.delivery_support import ROOT, Receiver, subscribe
from tests.process_support import gateway_processes
from tests.support import (
    STRUCTURED,
    admin_client,
    event,
    serve_in_thread,
    wait_for,
)

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t",
          "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"}, "http://c:4318/t"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)  # fmt: skip
def test_export_is_on_only_when_an_otlp_endpoint_is_set(
    environ: dict[str, str], endpoint: str | None
) -> None:
    """The traces endpoint comes from the standard settings; none set, or export disabled:
    no endpoint, and spans are the no-op kind."""
    assert traces_endpoint(environ) == endpoint
    if endpoint is None:
        assert isinstance(spans_from_environ(environ, "x"), NoSpans)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, object]
    error: bool


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: every span of every ExportTraceServiceRequest."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def export(self, request: Request) -> Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        found = []
        for resource in message.resource_spans:
            labels = {a.key: _value(a.value) for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        ReceivedSpan(
                            service=str(labels.get("service.name")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == 2,  # STATUS_CODE_ERROR
                        )
                    )
        with self.lock:
            self.spans.extend(found)
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    def named(self, name: str) -> list[ReceivedSpan]:
        with self.lock:
            return [s for s in self.spans if s.name == name]


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    found = Collector()
    app = Starlette(routes=[Route("/v1/traces", found.export, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield found, url


@pytest.mark.slow
def test_one_trace_spans_the_producer_acceptance_routing_and_delivery(
    settings: Settings, rx: Receiver, collector: tuple[Collector, str], tmp_path: Path
) -> None:
    """Real `serve` and `worker` processes exporting to an OTLP receiver: the producer's
    request span is the parent of the server span; acceptance (schema, policy, store),
    routing (one subscription matched) and the delivery attempt are all in the producer's
    trace, and the delivery span is the one the subscriber got in traceparent."""
    spans, url = collector
    extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with gateway_processes(settings, tmp_path / "logs", extra) as gw:
        with admin_client(gw.url, timeout=10) as admin:
            sub_id = subscribe(admin, rx, "/traced")["id"]
            sent = event()
            traceparent = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"
            headers = {**STRUCTURED, "traceparent": traceparent}
            assert admin.post("/v1/events", json=sent, headers=headers).status_code == 202
            wait_for(lambda: rx.at("/traced"), 30, what="the delivery")
        wait_for(lambda: spans.named("deliver cloudevents"), 30, what="the delivery span")
    got = rx.at("/traced")[0]
    delivered = TraceContext.parse(got.headers["traceparent"])
    assert delivered is not None and delivered.trace_id == PRODUCER_TRACE
    [server] = spans.named("POST /v1/events")
    assert (server.service, server.trace_id, server.parent_id) == (
        "incidents-api", PRODUCER_TRACE, PRODUCER_SPAN)  # fmt: skip
    assert server.kind == 2  # SPAN_KIND_SERVER
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.route"] == "/v1/events"
    assert server.attributes["http.response.status_code"] == 202
    [accept] = spans.named("accept")
    assert accept.parent_id == server.span_id and accept.trace_id == PRODUCER_TRACE
    assert accept.attributes["messaging.system"] == "incidents"
    assert accept.attributes["cloudevents.event_id"] == sent["id"]
    assert accept.attributes["cloudevents.event_type"] == "im.incident.declare"
    for stage in ("policy", "store"):
        [inner] = spans.named(stage)
        assert inner.parent_id == accept.span_id, stage
    [schema] = spans.named("schema")
    assert schema.parent_id == server.span_id
    [route] = [s for s in spans.named("route") if s.trace_id == PRODUCER_TRACE]
    assert route.service == "incidents-worker" and route.parent_id == PRODUCER_SPAN
    assert route.attributes["incidents.subscriptions.matched"] == 1
    assert route.attributes["cloudevents.event_id"] == sent["id"]
    [deliver] = spans.named("deliver cloudevents")
    assert deliver.span_id == delivered.span_id and deliver.trace_id == PRODUCER_TRACE
    assert deliver.parent_id == PRODUCER_SPAN and deliver.kind == 3  # SPAN_KIND_CLIENT
    assert deliver.attributes["messaging.system"] == "incidents"
    assert deliver.attributes["messaging.operation.type"] == "send"
    assert deliver.attributes["incidents.subscription"] == sub_id
    assert deliver.attributes["incidents.format"] == "cloudevents"
    assert deliver.attributes["incidents.attempt"] == 1
    assert deliver.attributes["incidents.outcome"] == "delivered"
    assert deliver.attributes["http.response.status_code"] == 200
    assert deliver.attributes["cloudevents.event_id"] == sent["id"]
    assert not deliver.error


@pytest.mark.wired
def test_spans_under_an_unsampled_parent_are_not_made(
    collector: tuple[Collector, str],
) -> None:
    """With the default parent-based sampler a span under an unsampled parent (flags 00) is
    skipped, leaving the caller to continue the trace; one under a sampled parent is
    recorded in its trace and exported when the spans are closed."""
    spans, url = collector
    recorder = spans_from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": url}, "incidents-test")
    recorder.open()
    try:
        unsampled = TraceContext(PRODUCER_TRACE, PRODUCER_SPAN, "00")
        with recorder.start("skipped", parent=unsampled) as span:
            assert span.context is None
        with recorder.start(
            "kept", parent=TraceContext(PRODUCER_TRACE, PRODUCER_SPAN, "01")
        ) as span:
            kept = span.context
            with recorder.start("inner"):
                assert recorder.current() is not None
    finally:
        recorder.close()
    assert kept is not None and kept.trace_id == PRODUCER_TRACE and kept.sampled
    assert [s.name for s in spans.spans] == ["inner", "kept"]
    [inner] = spans.named("inner")
    assert inner.parent_id == kept.span_id and inner.service == "incidents-test"


@pytest.mark.wired
def test_with_export_off_the_sdk_s_tracing_and_exporter_are_not_loaded() -> None:
    """`serve`'s app built without OTEL_* settings loads neither the SDK's tracing, nor the
    OTLP exporter, nor the module that uses them."""
    probe = (
        "import os, sys\n"
        "os.environ['INCIDENTS_REDIS_URL'] = 'redis://127.0.0.1:1/0'\n"
        "from incidents.cli.runner import app_from_environ\n"
        "app_from_environ()\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace',"
        " 'opentelemetry.exporter', 'incidents.tracing.otel'))]\n"
        "print(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INCIDENTS_"))}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60,
        cwd=ROOT, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
