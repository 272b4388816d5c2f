"""The spans seam: where the gateway says what it does (accepting, routing, delivering) for
whoever records it. ``NoSpans`` records nothing and costs a method call; the OpenTelemetry
implementation (``tracing.span_export``) is built only when export is configured."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from incidents.tracing.context import TraceContext

Kind = Literal["internal", "server", "client"]
Value = str | int | float | bool
Attributes = Mapping[str, Value]

MESSAGING_SYSTEM = "incidents"  # messaging.system of every span the gateway makes


class Span(Protocol):
    @property
    def context(self) -> TraceContext | None:
        """This span's own trace context (what continues under it), None when not recorded."""
        ...

    def set(self, name: str, value: Value) -> None: ...

    def rename(self, name: str) -> None: ...

    def fail(self, description: str) -> None:
        """Mark the span as an error."""
        ...


class Spans(Protocol):
    enabled: bool

    def start(
        self,
        name: str,
        *,
        parent: TraceContext | None = None,
        kind: Kind = "internal",
        attributes: Attributes | None = None,
        start_ns: int | None = None,
    ) -> AbstractContextManager[Span]:
        """A span open inside the block; under ``parent``, else under the current span."""
        ...

    def current(self) -> TraceContext | None:
        """The trace context of the span open in this task, if any."""
        ...

    def open(self) -> None:
        """Start recording (the exporter's thread): once, before the first span."""
        ...

    def close(self) -> None:
        """Send what was recorded and stop."""
        ...


class NoSpan:
    """A span that records nothing; it is its own context manager."""

    context = None

    def set(self, name: str, value: Value) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def fail(self, description: str) -> None:
        pass

    def __enter__(self) -> NoSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class NoSpans:
    """Spans when export is off: nothing is recorded."""

    enabled = False

    def __init__(self) -> None:
        self._span = NoSpan()

    def start(
        self,
        name: str,
        *,
        parent: TraceContext | None = None,
        kind: Kind = "internal",
        attributes: Attributes | None = None,
        start_ns: int | None = None,
    ) -> AbstractContextManager[Span]:
        return self._span

    def current(self) -> TraceContext | None:
        return None

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass
