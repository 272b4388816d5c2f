"""The commands people run: ``incidents dev`` end to end, and start-up refusals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from incidents.cli.main import main
from incidents.store.embedded import free_port
from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent


def start_dev(
    data_dir: Path, port: int, own_group: bool = False
) -> tuple[subprocess.Popen[str], str]:
    """``incidents dev`` started and read up to the end of its banner; ``own_group``: in a
    process group of its own, as a terminal's foreground job is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update({"INCIDENTS_PORT": str(port), "INCIDENTS_DATA_DIR": str(data_dir)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "incidents", "dev"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,
    )
    assert proc.stdout is not None
    output = ""
    deadline = time.monotonic() + 60
    while "-d '" not in output:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"incidents dev exited early:\n{output}")
        output += line
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"incidents dev printed no banner:\n{output}")
    return proc, output


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
def test_dev_prints_a_curl_command_that_works_and_keeps_data(tmp_path: Path) -> None:
    """`incidents dev` starts Redis, API and worker; its printed curl works; data survives."""
    port = free_port()
    proc, output = start_dev(tmp_path / "data", port)
    try:
        token = re.search(r"admin token\s+(\S+)", output)
        assert token, output
        curl = output[output.index("curl -sS") :].strip()
        done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=20)
        assert '"accepted"' in done.stdout, (done.stdout, done.stderr)
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        assert (
            httpx.get(f"http://127.0.0.1:{port}/v1/events/demo-1", headers=headers).status_code
            == 200
        )
    finally:
        assert stop(proc) == 0
    # Clean shutdown: nothing listens any more, and no redis-server is left behind.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert (tmp_path / "data" / "redis").is_dir()
    proc, output = start_dev(tmp_path / "data", port)
    try:
        assert token.group(1) in output  # the same admin token, kept in the data folder
        r = httpx.get(f"http://127.0.0.1:{port}/v1/events/demo-1", headers=headers)
        assert r.status_code == 200, r.text  # the embedded Redis kept the event across restarts
    finally:
        assert stop(proc) == 0


@pytest.mark.slow
def test_ctrl_c_stops_the_api_and_workers_before_redis_without_an_error(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole foreground group) stops `incidents dev` cleanly: the API and
    workers go first and Redis last, so no worker logs a lost connection; the banner named the
    console."""
    port = free_port()
    proc, output = start_dev(tmp_path / "data", port, own_group=True)
    assert f"http://127.0.0.1:{port}/console" in output
    found = re.search(r"Redis\s+(redis://\S+)", output)
    assert found, output
    with redis.Redis.from_url(found.group(1)) as client:  # the worker is at work
        wait_for(lambda: client.scard("rq:workers") >= 1, 30, "a registered worker")
    children = [
        int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    ]
    assert len(children) >= 3  # Redis, the API and a worker
    # The terminal's signal reaches dev alone; it then stops the others in order.
    assert all(os.getpgid(child) != os.getpgid(proc.pid) for child in children)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stdout is not None
    after = proc.stdout.read()
    proc.stdout.close()
    for complaint in ("could not connect to Redis", "unreachable", "without Redis", "Traceback"):
        assert complaint not in after, after
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_serve_refuses_to_start_without_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    """`incidents serve` with no Redis URL exits 2 and says which setting is missing."""
    assert main(["serve"], environ={"INCIDENTS_ADMIN_TOKEN": "x" * 20}) == 2
    assert "INCIDENTS_REDIS_URL" in capsys.readouterr().err


def test_serve_refuses_a_broken_schema_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    """A schema that does not compile stops start-up with the file named."""
    import shutil

    schemas = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schemas)
    (schemas / "events" / "im.incident.note.json").write_text("{")
    env = {
        "INCIDENTS_ADMIN_TOKEN": "x" * 20,
        "INCIDENTS_REDIS_URL": redis_url,
        "INCIDENTS_SCHEMAS_DIR": str(schemas),
        "INCIDENTS_POLICIES_DIR": str(ROOT / "policies"),
    }
    assert main(["serve"], environ=env) == 2
    assert "im.incident.note.json" in capsys.readouterr().err


def test_bad_setting_flag_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A flag with a bad value exits 2 naming the variable it sets."""
    assert main(["serve", "--port", "nope"], environ={}) == 2
    assert "INCIDENTS_PORT" in capsys.readouterr().err
