"""Commands for the things people do by hand."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

import httpx

from incidents.settings import Settings


def register(sub: Any, commands: dict[str, Any]) -> None:
    p = sub.add_parser("send", help="send one CloudEvent to a running gateway")
    p.add_argument("--url", default=None, help="gateway URL (default: from host and port)")
    p.add_argument("--token", default=None, help="bearer token (default: the admin token)")
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
    commands["send"] = cmd_send


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
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)
    return 0 if response.is_success else 1


def cmd_send(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = Settings.from_env(env)
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"incidents: --data is not JSON: {exc}", file=sys.stderr)
        return 2
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": args.id or str(uuid.uuid4()),
        "source": args.source,
        "type": args.type,
        "data": data,
    }
    for item in args.ext:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"incidents: --ext {item!r} is not NAME=VALUE", file=sys.stderr)
            return 2
        event[name] = value
    response = httpx.post(
        gateway_url(args, settings) + "/v1/events",
        content=json.dumps(event),
        headers={
            "Authorization": f"Bearer {token_of(args, settings)}",
            "Content-Type": "application/cloudevents+json",
        },
        timeout=10,
    )
    return print_response(response)
