"""Real parts for tests: a uvicorn server in a thread, event builders."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from incidents.store.embedded import free_port

ADMIN_TOKEN = "test-admin-token-0123456789"


@contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app under uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def event(
    type_: str = "im.incident.declare",
    data: Any = None,
    **attrs: Any,
) -> dict[str, Any]:
    """A valid structured-mode event; attributes given as keywords override or add."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests",
        "type": type_,
    }
    if data is None:
        data = sample_data(type_)
    body["data"] = data
    if type_.startswith("im.incident.") and type_ != "im.incident.declare":
        body["imincidentid"] = "INC-1"
    if type_.startswith("im.alert."):
        body["imcorrelationkey"] = "fingerprint-1"
    body.update(attrs)
    return {k: v for k, v in body.items() if v is not _DROP}


class _Drop:
    pass


_DROP: Any = _Drop()
DROP: Any = _DROP  # pass as an attribute value to leave that attribute out


def sample_data(type_: str) -> dict[str, Any]:
    return {
        "im.incident.declare": {
            "title": "Checkout down",
            "severity": "SEV2",
            "service": "checkout",
        },
        "im.incident.note": {"text": "rolled back the deploy"},
        "im.incident.role_assign": {"role": "commander", "assignee": "alice"},
        "im.incident.state_change": {"status": "mitigated", "reason": "rollback"},
        "im.alert.trigger": {"summary": "High error rate", "severity": "SEV2"},
    }.get(type_, {})
