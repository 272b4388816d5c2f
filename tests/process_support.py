"""A real gateway as operators run it: `incidents serve` and `incidents worker` processes,
each with its output kept in a file, stopped (SIGTERM, as a supervisor stops them) on the
way out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from incidents.settings import Settings
from tests.delivery_support import ROOT
from tests.support import ADMIN_TOKEN, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Processes:
    url: str
    logs: Path  # the folder holding serve.log and worker.log

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def lines(self) -> list[str]:
        """Every line either process wrote."""
        return [line for name in ("serve", "worker") for line in self.log(name).splitlines()]


def spawn(command: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``incidents <command>`` with ``env``, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "incidents", command],
            env=dict(env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM every process still running, as a supervisor stops them; SIGKILL one that has
    not stopped within ``timeout``."""
    found = list(processes)
    for process in found:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in found:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_env(settings: Settings, port: int, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INCIDENTS_", "OTEL_"))}
    env.update(
        INCIDENTS_ADMIN_TOKEN=ADMIN_TOKEN,
        INCIDENTS_REDIS_URL=str(settings.redis_url),
        INCIDENTS_SCHEMAS_DIR=str(settings.schemas_dir),
        INCIDENTS_POLICIES_DIR=str(settings.policies_dir),
        INCIDENTS_ALLOW_PRIVATE_SINKS="true",
        INCIDENTS_ALLOW_INSECURE_SINKS="true",
        INCIDENTS_RETRY_SCHEDULE=",".join(str(s) for s in settings.retry_schedule),
        INCIDENTS_DELIVERY_TIMEOUT="5",
        INCIDENTS_PORT=str(port),
    )
    if settings.secret_key is not None:
        env["INCIDENTS_SECRET_KEY"] = settings.secret_key
    if settings.queue_redis_url is not None:
        env["INCIDENTS_QUEUE_REDIS_URL"] = settings.queue_redis_url
    env.update(extra)
    return env


@contextmanager
def gateway_processes(
    settings: Settings, logs: Path, extra: Mapping[str, str] | None = None
) -> Iterator[Processes]:
    """`incidents serve` and one `incidents worker` on ``settings`` (plus ``extra``
    variables), until the block ends."""
    port = free_port()
    env = process_env(settings, port, extra or {})
    logs.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("serve", "worker"):
            started.append(spawn(name, env, logs / f"{name}.log"))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert all(p.poll() is None for p in started), "serve or worker exited"
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, what="incidents serve answering /readyz")
        yield Processes(url, logs)
    finally:
        stop_processes(started)
