"""Keeps ``incidents dev``'s child processes (the API, the workers) running: a child that
exits is started again after a backoff, so one that crashes at once does not spin."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import TextIO

FIRST_DELAY = 1.0  # seconds before the first restart; doubles with each quick crash
MAX_DELAY = 30.0
STEADY = 60.0  # a child that stayed up this long restarts after FIRST_DELAY again


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


class Child:
    """One supervised process. Time comes in as ``now`` (monotonic seconds)."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], out: TextIO | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.delay = FIRST_DELAY
        self.restart_at: float | None = None

    def start(self, now: float) -> None:
        # A session of its own: a terminal's Ctrl-C (SIGINT to the whole foreground group) then
        # reaches only `incidents dev`, which stops its children in order (stop_all), instead
        # of every process at once, and a worker is not signalled twice (a cold shutdown).
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True)  # noqa: S603  # our own interpreter and arguments
        self.started = now
        self.restart_at = None

    def check(self, now: float) -> None:
        """Notice an exit (one line on stderr) and restart once its backoff has passed."""
        if self.process is None:
            return
        if self.restart_at is None:
            code = self.process.poll()
            if code is None:
                return
            if now - self.started >= STEADY:
                self.delay = FIRST_DELAY
            print(
                f"incidents: {self.name} (pid {self.process.pid}) exited with "
                f"{describe_exit(code)}; restarting it in {self.delay:g} s",
                file=self.out or sys.stderr,
                flush=True,
            )
            self.restart_at = now + self.delay
            self.delay = min(self.delay * 2, MAX_DELAY)
        elif now >= self.restart_at:
            self.start(now)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def stop_all(children: Sequence[Child], timeout: float = 30.0) -> None:
    """SIGTERM every running child, wait for each (a warm shutdown), kill what outlasts it."""
    for child in children:
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
