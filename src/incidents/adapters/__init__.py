"""Inbound adapters: monitoring tools' own webhook formats turned into ``im.alert.*``
CloudEvents, which then go through the same acceptance pipeline as ``POST /v1/events``."""
