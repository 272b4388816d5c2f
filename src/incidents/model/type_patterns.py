"""Event-type patterns, as subscriptions and live streams name the events they want: an exact
type (``im.incident.declare``), a prefix ending in ``*`` (``im.incident.*``), or ``*``."""

from __future__ import annotations

import re
from collections.abc import Iterable

TYPE_PATTERN = re.compile(r"[A-Za-z0-9._:/-]{1,200}\*?|\*")
MAX_TYPE_PATTERNS = 100  # patterns one subscription or stream may list


def is_type_pattern(text: str) -> bool:
    return TYPE_PATTERN.fullmatch(text) is not None


def type_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def any_type_matches(patterns: Iterable[str], event_type: str) -> bool:
    return any(type_matches(p, event_type) for p in patterns)
