"""incidents: a gateway and router for incident-management events."""

from __future__ import annotations

__version__ = "0.1.0"
