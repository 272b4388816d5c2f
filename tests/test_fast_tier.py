"""The fast tier (tests/fast_tier.py): what is in it, and that a test of it cannot reach a
socket or another process unnoticed."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys

import pytest

from tests.fast_tier import OutsideTheProcess, outside_refused


def test_a_socket_connect_or_bind_is_refused_and_noted() -> None:
    """Connecting and binding raise, and each attempt is kept, even one the code swallows."""
    with outside_refused() as attempts:
        with socket.socket() as sock:
            with pytest.raises(OutsideTheProcess):
                sock.connect(("127.0.0.1", 9))
            with contextlib.suppress(OutsideTheProcess):  # as code that swallows the refusal
                sock.bind(("127.0.0.1", 0))
        assert attempts == ["socket.connect (('127.0.0.1', 9),)", "socket.bind (('127.0.0.1', 0),)"]


def test_starting_a_process_is_refused() -> None:
    """subprocess (and what is built on it) cannot start a process within the block."""
    with outside_refused() as attempts, pytest.raises(OutsideTheProcess, match="mark it wired"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert len(attempts) == 1 and attempts[0].startswith("start a process")


def test_this_module_is_in_the_fast_tier(request: pytest.FixtureRequest) -> None:
    """A test that asks for no real part is marked fast."""
    assert request.node.get_closest_marker("fast") is not None


def test_a_test_with_a_real_part_is_not(
    request: pytest.FixtureRequest, redis_client: object
) -> None:
    """A test that asks for the test Redis (through redis_client) is not marked fast."""
    assert request.node.get_closest_marker("fast") is None
