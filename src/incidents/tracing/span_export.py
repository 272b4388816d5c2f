"""Whether spans are exported, read from the standard OpenTelemetry settings: on when
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over
HTTP, protobuf), unless ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER`` does not name
``otlp``. Off, the SDK's tracing and the exporter are not loaded and every span is a
no-op; the other ``OTEL_*`` settings (headers, timeout, sampler, batching, resource
attributes, service name) are the SDK's own."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from incidents.tracing.spans import NoSpans, Spans

log = logging.getLogger("incidents")
API_SERVICE = "incidents-api"
WORKER_SERVICE = "incidents-worker"


def traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """Where spans are sent, or None when export is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if "otlp" not in [e.strip() for e in exporters.split(",")]:
        return None
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def spans_from_environ(environ: Mapping[str, str], service: str) -> Spans:
    """The spans of a process named ``service`` (unless ``OTEL_SERVICE_NAME`` names it)."""
    endpoint = traces_endpoint(environ)
    if endpoint is None:
        return NoSpans()
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() != "http/protobuf":
        log.warning("OTLP protocol %r is not supported; spans are sent as http/protobuf", protocol)
    from incidents.tracing.otel import OtelSpans  # the SDK is loaded only now

    return OtelSpans(endpoint, service, environ)
