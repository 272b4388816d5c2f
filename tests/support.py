"""Real parts for tests: a uvicorn server in a thread, event builders, clients for the
gateway (principals, posting events, problem checks), and waiting for a condition."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
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


STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def post(client: httpx.Client, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(
        "/v1/events",
        content=body if isinstance(body, bytes | str) else json.dumps(body),
        headers=headers or STRUCTURED,
    )


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:incidents:problem:{slug}"
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def pointers(body: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in body.get("errors", [])]


def create_principal(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Create a principal as admin and return the response body (with its token)."""
    body: dict[str, Any] = {"name": "p", "roles": ["producer"], "publish": ["im.*"]}
    body.update(fields)
    r = client.post("/v1/principals", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_token(client: httpx.Client, token: str) -> httpx.Client:
    """A client for the same gateway that authenticates with ``token``."""
    return httpx.Client(
        base_url=str(client.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def wait_for(done: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    """Poll ``done`` until it holds; fail the test if it does not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(every)
