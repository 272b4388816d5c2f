"""``incidents dev`` keeps its children running: a child that exits is restarted, after a
backoff that grows while it keeps crashing at once."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from incidents.cli.supervisor import MAX_DELAY, STEADY, Child
from incidents.store.embedded import free_port
from tests.delivery_support import Receiver, publish, subscribe
from tests.support import TEST_TLS, event, wait_for

ROOT = Path(__file__).resolve().parent.parent
CRASH = [sys.executable, "-c", "raise SystemExit(3)"]


def crashed(child: Child) -> None:
    """Wait for the child's current process to exit."""
    assert child.process is not None
    child.process.wait(30)


@pytest.mark.wired
def test_a_child_that_crashes_at_once_is_restarted_with_growing_delays() -> None:
    """Each quick crash is reported with its exit code and doubles the delay, up to a cap."""
    out = io.StringIO()
    child = Child("crasher", CRASH, dict(os.environ), out)
    now = 0.0
    child.start(now)
    delays = []
    for _ in range(7):
        crashed(child)
        first = child.process
        child.check(now)
        assert child.restart_at is not None
        delay = child.restart_at - now
        delays.append(delay)
        child.check(now + delay - 0.01)
        assert child.process is first  # not before its time
        now += delay
        child.check(now)
        assert child.process is not first
    crashed(child)
    assert delays == [1, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY]
    lines = out.getvalue().splitlines()
    assert len(lines) == 7
    assert re.fullmatch(
        r"incidents: crasher \(pid \d+\) exited with code 3; restarting it in 1 s", lines[0]
    )


@pytest.mark.wired
def test_a_child_that_stayed_up_a_while_restarts_after_the_first_delay_again() -> None:
    """A crash after a long enough run resets the backoff to its first delay."""
    child = Child("crasher", CRASH, dict(os.environ), io.StringIO())
    child.start(0.0)
    for now in (0.0, 1.0, 3.0, 7.0):  # three quick crashes: the next delay is 8 s
        crashed(child)
        child.check(now)
        child.check(child.restart_at or now)
    started = child.started
    crashed(child)
    child.check(started + STEADY)
    assert child.restart_at == started + STEADY + 1.0


@pytest.mark.wired
def test_a_child_killed_by_a_signal_is_reported_by_name() -> None:
    """The restart line names the signal that ended the child."""
    out = io.StringIO()
    child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, out)
    child.start(0.0)
    assert child.process is not None
    child.process.send_signal(signal.SIGKILL)
    crashed(child)
    child.check(0.5)
    assert "exited with code -9 (SIGKILL); restarting it in 1 s" in out.getvalue()


def children_of(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` and their command lines, read from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found[int(entry.name)] = cmdline
    return found


def workers_of(pid: int) -> set[int]:
    return {p for p, cmd in children_of(pid).items() if cmd.rstrip().endswith("incidents worker")}


@pytest.mark.slow
def test_dev_restarts_a_killed_worker_and_keeps_delivering(tmp_path: Path, rx: Receiver) -> None:
    """SIGKILL the only worker of `incidents dev`: dev says so, starts another, and events are
    delivered again; SIGTERM still stops everything with 0."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_PORT=str(port), INCIDENTS_DATA_DIR=str(tmp_path / "data"), INCIDENTS_WORKERS="1"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "incidents", "dev"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any("admin token" in line for line in lines), 60)
        token = re.search(r"admin token\s+(\S+)", "".join(lines))
        assert token, lines
        (first,) = workers_of(proc.pid)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: workers_of(proc.pid) - {first} != set(), 30)
        assert proc.poll() is None
        assert any(f"worker 1 (pid {first}) exited with code -9" in line for line in lines), lines
        with httpx.Client(
            verify=TEST_TLS,
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token.group(1)}"},
            timeout=10,
        ) as client:
            subscribe(client, rx, "/dev")
            sent = event("im.incident.declare")
            publish(client, sent)
            wait_for(lambda: any(r.event["id"] == sent["id"] for r in rx.at("/dev")), 30)
        assert all(r.verified for r in rx.at("/dev"))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        reader.join(10)
        stdout.close()
    assert code == 0, lines
