"""Commands for the things people do by hand, each against a running gateway over HTTP:
``send`` here; subscriptions, deliveries, replay and dead letters in ``delivery_commands``.

A refused answer prints its problem details on stderr and exits 1; so does a gateway that
cannot be reached (a one-line message, no traceback).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from incidents.settings import Settings

TIMEOUT = 10.0
Command = Callable[[argparse.Namespace, dict[str, str]], int]


class Unreachable(Exception):
    """The gateway did not answer: refused, timed out, or a URL that cannot be used."""


@dataclass(frozen=True)
class Gateway:
    """Where a command sends its requests, and as whom."""

    url: str
    token: str

    @classmethod
    def of(cls, args: argparse.Namespace, env: dict[str, str]) -> Gateway:
        settings = Settings.from_env(env)
        return cls(gateway_url(args, settings), token_of(args, settings))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        try:
            return httpx.request(
                method, self.url + path, headers=headers, timeout=TIMEOUT, **kwargs
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise Unreachable(f"cannot reach the gateway at {self.url}: {exc}") from exc


def reporting(command: Command) -> Command:
    """Turn an unreachable gateway into a one-line message and exit status 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, env: dict[str, str]) -> int:
        try:
            return command(args, env)
        except Unreachable as exc:
            print(f"incidents: {exc}", file=sys.stderr)
            return 1

    return run


def client_flags(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    # On a nested action the default is SUPPRESS, so a flag given before the action stays.
    default = argparse.SUPPRESS if nested else None
    parser.add_argument("--url", default=default, help="gateway URL (default: host and port)")
    parser.add_argument("--token", default=default, help="bearer token (default: admin token)")


def setting_flags(parser: argparse.ArgumentParser) -> None:
    """The settings flags on a nested action too (SUPPRESS, for the same reason)."""
    from incidents.cli.main import add_setting_flags  # main imports this module as it builds

    add_setting_flags(parser, nested=True)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    from incidents.cli import delivery_commands, silence_commands

    p = sub.add_parser("send", help="send one CloudEvent to a running gateway")
    client_flags(p)
    p.add_argument("--type", required=True, help="event type, e.g. im.incident.declare")
    p.add_argument("--source", default="/cli", help="event source")
    p.add_argument("--id", default=None, help="event id (default: a new UUID)")
    p.add_argument("--data", default="{}", help="the event's data as JSON")
    p.add_argument(
        "--ext",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extension attribute, e.g. imincidentid=INC-1 (repeatable)",
    )
    commands["send"] = reporting(cmd_send)
    delivery_commands.register(sub, commands)
    silence_commands.register(sub, commands)


def gateway_url(args: argparse.Namespace, settings: Settings) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104  # choosing where to connect
    return f"http://{host}:{settings.port}"


def token_of(args: argparse.Namespace, settings: Settings) -> str:
    if args.token:
        return str(args.token)
    if settings.admin_token:
        return settings.admin_token
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("incidents: no token: pass --token or set INCIDENTS_ADMIN_TOKEN")


def print_response(response: httpx.Response) -> int:
    """A success's body on stdout (0); otherwise its problem on stderr (1)."""
    if not response.is_success:
        return print_problem(response)
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)
    return 0


def print_problem(response: httpx.Response) -> int:
    """The problem details of a refused request on stderr, one line per field error; 1."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = f"{response.status_code} {response.reason_phrase}"
    if isinstance(body, dict) and "detail" in body:
        print(f"incidents: {status}: {body['detail']}", file=sys.stderr)
        for error in body.get("errors") or ():
            if isinstance(error, dict):
                print(f"  {error.get('pointer', '')}: {error.get('detail', '')}", file=sys.stderr)
    else:
        print(f"incidents: {status}: {response.text.strip()}", file=sys.stderr)
    return 1


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def when(value: Any) -> str:
    """An ISO time or a unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for none."""
    if value is None or value == "":
        return "-"
    try:
        if isinstance(value, int | float):
            at = datetime.fromtimestamp(value, UTC)
        else:
            at = datetime.fromisoformat(str(value)).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return str(value)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any, width: int = 60) -> str:
    """One table cell: a single line, ``-`` for none, cut to ``width``."""
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def pairs(items: Sequence[str], flag: str) -> dict[str, str] | None:
    """``NAME=VALUE`` arguments as a dict; None (after saying why) if one is malformed."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"incidents: {flag} {item!r} is not NAME=VALUE", file=sys.stderr)
            return None
        out[name] = value
    return out


def cmd_send(args: argparse.Namespace, env: dict[str, str]) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"incidents: --data is not JSON: {exc}", file=sys.stderr)
        return 2
    extensions = pairs(args.ext, "--ext")
    if extensions is None:
        return 2
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": args.id or str(uuid.uuid4()),
        "source": args.source,
        "type": args.type,
        "data": data,
        **extensions,
    }
    response = Gateway.of(args, env).request(
        "POST",
        "/v1/events",
        content=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    return print_response(response)
