"""Tracing: the W3C trace context kept with each event and continued by each delivery
(``context``), the spans seam (``spans``) with its OpenTelemetry export (``span_export``, loaded
only when the standard ``OTEL_EXPORTER_OTLP_*`` settings ask for it), and the HTTP side
(``middleware``)."""
