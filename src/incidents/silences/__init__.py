"""Silences: deliveries held for a while (a maintenance window), recorded as silenced."""
