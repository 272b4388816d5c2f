"""Log lines: one per record, as text or as one JSON object (``INCIDENTS_LOG_FORMAT``).

A JSON line holds ``time``, ``level``, ``logger``, ``message``, the ids that apply
(``event_id``, ``incident``, ``subscription``, ``delivery``, ``trace_id``) and, for an
exception, ``exception`` (its traceback as one string). The ids come from the code that
works on them (``log_ids``, a context variable, so every line logged inside says which
delivery it is about), or from a call's ``extra=``. Text lines append the same ids as
``key=value``.

No secret belongs in a log line, and none is put there on purpose; as a second guard every
line is scrubbed of what has the shape of one (URL credentials, bearer tokens, Standard
Webhooks secrets), whatever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import orjson

JSON: Final = "json"
TEXT: Final = "text"
FORMATS = (JSON, TEXT)
IDS = ("event_id", "incident", "subscription", "delivery", "trace_id")

_NONE: Mapping[str, str] = MappingProxyType({})
_current: ContextVar[Mapping[str, str]] = ContextVar("incidents_log_ids", default=_NONE)
_SECRETS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"  # user:password@ in a URL
    r"|(?P<bearer>\b[Bb]earer\s+)[^\s\"',]+"  # an Authorization value
    r"|whsec_[A-Za-z0-9+/=]+"  # a Standard Webhooks secret
)


@contextmanager
def log_ids(**ids: str | None) -> Iterator[None]:
    """Every line logged inside the block names these ids (those given and not empty)."""
    token = _current.set({**_current.get(), **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _current.reset(token)


def scrub(text: str) -> str:
    """``text`` with anything shaped like a credential replaced by ``***``."""

    def hide(found: re.Match[str]) -> str:
        if found.group("scheme"):
            return found.group("scheme") + "***@"
        if found.group("bearer"):
            return found.group("bearer") + "***"
        return "***"

    return _SECRETS.sub(hide, text)


def _ids(record: logging.LogRecord) -> dict[str, str]:
    found = dict(_current.get())
    for name in IDS:
        value = record.__dict__.get(name)
        if value:
            found[name] = str(value)
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_ids(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return scrub(orjson.dumps(line).decode())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _ids(record)
        if ids:
            shown = " ".join(f"{k}={v}" for k, v in ids.items())
            first, newline, rest = text.partition("\n")
            text = f"{first} [{shown}]{newline}{rest}"
        return scrub(text)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``json`` or ``text`` (also named in a ``logging.config`` dict)."""
    return JsonFormatter() if log_format == JSON else TextFormatter()


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Send every logger's records to stderr, one line each in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def uvicorn_config(log_format: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: its loggers and ours through one stderr handler, in
    ``log_format`` (applied in every server process)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": "incidents.logs.formatter", "log_format": log_format}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            name: {"handlers": [], "level": "INFO", "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
