"""Signing in to the console over plain HTTP, and reading what its pages carry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support import TEST_TLS, event, post

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@contextmanager
def sign_in(gateway: str, token: str) -> Iterator[httpx.Client]:
    """A client holding a console session made from ``token`` (no Authorization header)."""
    with httpx.Client(verify=TEST_TLS, base_url=gateway, timeout=10) as c:
        form = c.get("/console/sign-in")
        r = c.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": token})
        assert r.status_code == 303, r.text
        yield c


def declare(client: httpx.Client, title: str = "Checkout down", **attrs: object) -> str:
    """Declare an incident through the API; its id."""
    data = {"title": title, "severity": "SEV2", "service": "checkout"}
    r = post(client, event("im.incident.declare", data, **attrs))
    assert r.status_code == 202, r.text
    incident: str = r.json()["accepted"][0]["incident"]
    return incident
