"""The fast tier: tests of pure logic, run in-process with no Redis, no socket and no other
process, selected with ``pytest -m fast`` (``scripts/test --fast``).

A test is in it when it asks for none of the real parts (the test Redis or Cluster, the shared
HTTP servers) and is not marked ``slow`` or ``wired``; ``wired`` marks a test that starts a
real part of its own (a server, a Redis, a command) without those fixtures. The tier is kept
honest as it runs: a test of the tier that connects or binds a socket, or starts a process,
fails saying so, in the whole suite as in the tier alone.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# The fixtures that reach a real part: a test asking for one (even through another fixture)
# needs a Redis or a socket.
REAL_PARTS = frozenset({"redis_server", "redis_cluster", "shared_server", "receiver_server"})


def is_fast(item: pytest.Item) -> bool:
    if item.get_closest_marker("slow") or item.get_closest_marker("wired"):
        return False
    return not REAL_PARTS.intersection(getattr(item, "fixturenames", ()))


def mark(items: list[pytest.Item]) -> None:
    """Mark ``fast`` every test of the tier."""
    for item in items:
        if is_fast(item):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def fast_tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test of the fast tier that reaches outside its process (see the docstring of
    ``tests.fast_tier``)."""
    if request.node.get_closest_marker("fast") is None:
        yield
        return
    with outside_refused() as attempts:
        yield
    if attempts:
        pytest.fail(f"a fast-tier test reached outside its process: {attempts}; mark it wired")


@contextmanager
def outside_refused() -> Iterator[list[str]]:
    """Within the block, connecting or binding a socket and starting a process raise
    ``OutsideTheProcess``; yields the list of attempts, kept in case the code under test
    swallows the refusal."""
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what} {args[1:2]}")  # args[0] is the socket or the Popen
            raise OutsideTheProcess(f"a fast-tier test may not {what}: mark it wired")

        return refused

    with pytest.MonkeyPatch.context() as patch:
        for name in ("connect", "connect_ex", "bind"):
            patch.setattr(socket.socket, name, refuse(f"socket.{name}"))
        patch.setattr(subprocess.Popen, "__init__", refuse("start a process"))
        yield attempts


class OutsideTheProcess(Exception):
    """What a fast-tier test gets for reaching a socket or starting a process."""
