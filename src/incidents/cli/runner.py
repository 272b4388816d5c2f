"""Commands that run the gateway: ``dev``, ``serve``, ``worker``."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from incidents import logs
from incidents.cli.preflight import check_redis, preflight
from incidents.cli.supervisor import Child, stop_all
from incidents.settings import Settings, SettingsError
from incidents.store.embedded import EmbeddedRedis, EmbeddedRedisError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from incidents.cli.commands import Command


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    p = sub.add_parser("dev", help="everything on one machine: embedded Redis, API and a worker")
    p.add_argument("--redis-port", type=int, default=None, help="port for the embedded Redis")
    commands["dev"] = cmd_dev
    p = sub.add_parser("serve", help="run the HTTP API (production)")
    commands["serve"] = cmd_serve
    p = sub.add_parser("worker", help="run a delivery worker (production)")
    p.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    commands["worker"] = cmd_worker


def cmd_serve(args: argparse.Namespace, env: dict[str, str]) -> int:
    import uvicorn

    settings = Settings.from_env(env)
    if settings.redis_url is None:
        raise SettingsError(
            "INCIDENTS_REDIS_URL is not set: point it at Redis, or run `incidents dev`"
        )
    if settings.admin_token is None:
        raise SettingsError("INCIDENTS_ADMIN_TOKEN is not set; it must be for `serve`")
    _check_secret_key(settings, "serve")
    preflight(settings)
    from incidents.api.toolkit.bounded_protocol import BoundedHttpToolsProtocol
    from incidents.app import create_app

    create_app(settings)  # fail here, with a clear message, if schemas or policies are broken
    os.environ.update(env)  # the factory below reads the environment in each server process
    log_format = settings.log_format or logs.JSON
    logs.configure(log_format)
    uvicorn.run(
        "incidents.cli.runner:app_from_environ",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        access_log=False,
        log_level="info",
        log_config=logs.uvicorn_config(log_format),
        timeout_graceful_shutdown=20,
        proxy_headers=True,
        server_header=False,
        # httptools with bounds on the size and arrival time of the request head.
        http=BoundedHttpToolsProtocol,
    )
    return 0


def app_from_environ() -> Starlette:
    from incidents.app import create_app
    from incidents.tracing.span_export import API_SERVICE, spans_from_environ

    spans = spans_from_environ(os.environ, API_SERVICE)
    return create_app(Settings.from_env(os.environ), server_process=True, spans=spans)


def cmd_worker(args: argparse.Namespace, env: dict[str, str]) -> int:
    from incidents.retention.sweeper import sweeping
    from incidents.worker.process import run_worker

    settings = Settings.from_env(env)
    if settings.redis_url is None:
        raise SettingsError(
            "INCIDENTS_REDIS_URL is not set: point it at Redis, or run `incidents dev`"
        )
    _check_secret_key(settings, "worker")
    logs.configure(settings.log_format or logs.JSON)
    preflight(settings)
    return run_worker(
        settings,
        burst=args.burst,
        server_process=True,
        environ=env,
        housekeeping=sweeping(settings),
    )


def _check_secret_key(settings: Settings, command: str) -> None:
    """Refuse to start without INCIDENTS_SECRET_KEY once Redis holds secrets sealed under
    one: the workers could not deliver to those subscriptions. Redis out of reach: no
    verdict (``serve`` and ``worker`` wait for it, and a worker without the key records a
    failed attempt naming the problem)."""
    if settings.secret_key is not None:
        return
    import asyncio

    from redis.exceptions import RedisClusterException, RedisError

    from incidents.errors import StoreUnavailable
    from incidents.store.redis import connect_async
    from incidents.subscriptions.subscription import SubscriptionStore

    async def holding() -> int:
        assert settings.redis_url is not None
        redis = connect_async(settings.redis_url)
        try:
            return await SubscriptionStore(redis).holding_secrets()
        finally:
            await redis.aclose()

    try:
        count = asyncio.run(holding())
    except (RedisError, RedisClusterException, StoreUnavailable, OSError):
        return
    if count:
        raise SettingsError(
            f"INCIDENTS_SECRET_KEY is not set, and {count} subscription(s) in Redis hold"
            " secrets stored encrypted under it: set it to that key for `" + command + "`"
        )


def _kept(settings: Settings, configured: str | None, name: str, make: Callable[[], str]) -> str:
    """A setting's value, else the one kept in the file ``name`` of the data folder (made on
    the first run, readable by its owner only)."""
    if configured:
        return configured
    path = settings.data_dir / name
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    value = make()
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(value + "\n")
    return value


def _admin_token(settings: Settings) -> str:
    return _kept(
        settings, settings.admin_token, "admin-token", lambda: "adm_" + secrets.token_urlsafe(32)
    )


def _secret_key(settings: Settings) -> str:
    """The key connector secrets are stored under."""
    from incidents.store.secret_box import new_key

    return _kept(settings, settings.secret_key, "secret-key", new_key)


def banner(url: str, token: str, redis: str) -> str:
    sample = (
        '{"specversion":"1.0","id":"demo-1","source":"/demo","type":"im.incident.declare",'
        '"data":{"title":"Checkout is down","severity":"SEV1","service":"checkout"}}'
    )
    return f"""
incidents is running
  API          {url}
  Console      {url}/console
  OpenAPI      {url}/openapi.json
  Redis        {redis}
  admin token  {token}

Try it:
  curl -sS -X POST {url}/v1/events \\
    -H 'Authorization: Bearer {token}' \\
    -H 'Content-Type: application/cloudevents+json' \\
    -d '{sample}'
"""


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def dev_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment ``dev`` runs its API and workers with: local sinks allowed, and what
    retention removes archived in the data folder, unless set otherwise."""
    env = dict(env)
    env.setdefault("INCIDENTS_ALLOW_PRIVATE_SINKS", "true")
    env.setdefault("INCIDENTS_ALLOW_INSECURE_SINKS", "true")
    env.setdefault("INCIDENTS_LOG_FORMAT", logs.TEXT)  # read by a person at a terminal
    if Settings.from_env(env).archive_dir is None:
        env["INCIDENTS_ARCHIVE_DIR"] = str(Settings.from_env(env).data_dir / "archive")
    return env


def cmd_dev(args: argparse.Namespace, env: dict[str, str]) -> int:
    env = dev_environment(env)
    settings = Settings.from_env(env)
    token = _admin_token(settings)
    env["INCIDENTS_ADMIN_TOKEN"] = token
    env["INCIDENTS_SECRET_KEY"] = _secret_key(settings)
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        try:
            embedded = EmbeddedRedis(settings.data_dir / "redis", env, port=args.redis_port)
            env["INCIDENTS_REDIS_URL"] = embedded.start()
        except EmbeddedRedisError as exc:
            print(f"incidents: cannot start the embedded Redis: {exc}", file=sys.stderr)
            return 1
    redis_url = env["INCIDENTS_REDIS_URL"]
    check_redis(settings.replace(redis_url=redis_url))  # before starting what would refuse it
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    python = sys.executable
    children = [Child("the API", [python, "-m", "incidents", "serve"], env)]
    for n in range(1, settings.workers + 1):
        children.append(Child(f"worker {n}", [python, "-m", "incidents", "worker"], env))
    try:
        for child in children:
            child.start(time.monotonic())
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104  # only choosing what to print
        url = f"http://{host}:{settings.port}"
        if not _wait_ready(url, children, stop):
            return 1
        redis_desc = redis_url
        if embedded is not None:
            redis_desc += f" (embedded, data in {embedded.data_dir.resolve()})"
        print(banner(url, token, redis_desc), flush=True)
        # From here on a child that exits is started again (after a backoff): a worker that
        # dies must not leave deliveries waiting, nor take the whole gateway down.
        while not stop.requested:
            now = time.monotonic()
            for child in children:
                child.check(now)
            time.sleep(0.2)
        return 0
    finally:
        stop_all(children)
        if embedded is not None:
            embedded.stop()


def _wait_ready(url: str, children: list[Child], stop: _Stop) -> bool:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not stop.requested:
        if not all(c.running() for c in children):
            print("incidents: the API or a worker failed to start", file=sys.stderr)
            return False
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False
