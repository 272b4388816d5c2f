"""Alerts: correlation of ``im.alert.*`` events by correlation key, and the alert read API."""
