"""Prometheus Alertmanager: ``adapter`` takes its webhooks (``POST /v1/ingest/alertmanager``)
as ``im.alert.*`` events."""
