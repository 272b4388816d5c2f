"""Slack: ``channel`` posts one Block Kit message per event to an incoming webhook."""
