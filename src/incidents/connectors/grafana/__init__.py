"""Grafana Alerting: ``adapter`` takes its webhooks (``POST /v1/ingest/grafana``), signed or not,
as ``im.alert.*`` events."""
