"""``incidents subscribe``, ``subscriptions list|show|delete|rotate-secret|enable|disable``,
``deliveries``, ``replay`` and ``dead-letters list|redrive``: the webhook side, by hand."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from incidents.cli.commands import (
    Command,
    Gateway,
    cell,
    client_flags,
    pairs,
    print_problem,
    print_response,
    print_table,
    reporting,
    setting_flags,
    when,
)

_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _actions(
    parent: argparse.ArgumentParser, dest: str, names: dict[str, str]
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    client_flags(parent)
    actions = parent.add_subparsers(dest=dest, metavar="ACTION")
    for name, text in names.items():
        action = actions.add_parser(name, help=text)
        client_flags(action, nested=True)
        setting_flags(action)
    return actions


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    p = sub.add_parser("subscribe", help="register a webhook; prints its secret once")
    client_flags(p)
    p.add_argument("--sink", required=True, help="the webhook URL")
    p.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        metavar="TYPE",
        help="an event type, or a prefix ending in * (repeatable; default: every type)",
    )
    p.add_argument("--source", default=None, help="only events from this source")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        dest="filters",
        metavar="JSON",
        help="a filter, e.g. '{\"sql\": \"imseverity IN ('SEV1','SEV2')\"}' or"
        ' \'{"exact": {"imseverity": "SEV1"}}\' (dialects: exact, prefix, suffix, all, any, not,'
        " sql; repeatable; all must match)",
    )
    p.add_argument("--mode", choices=("structured", "binary"), default=None)
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header sent with every delivery (repeatable)",
    )
    p.add_argument("--handshake", action="store_true", help="ask the sink first (OPTIONS)")
    p.add_argument("--description", default=None)
    p.add_argument(
        "--format",
        default=None,
        help="cloudevents (default), servicenow, jira, pagerduty, slack or teams",
    )
    p.add_argument(
        "--formatsettings",
        default=None,
        metavar="JSON",
        help='the format\'s settings, e.g. \'{"routing_key": "R0123..."}\' (or @file.json)',
    )
    commands["subscribe"] = reporting(cmd_subscribe)

    p = sub.add_parser("subscriptions", help="list, show, delete, enable or disable webhooks")
    actions = _actions(
        p,
        "subscriptions_command",
        {
            "list": "list subscriptions (the default action)",
            "show": "show one subscription",
            "delete": "delete a subscription",
            "rotate-secret": "a new signing secret; the old one keeps working for a while",
            "enable": "enable a subscription (after a handshake, if it asks for one)",
            "disable": "disable a subscription",
        },
    )
    for name, action in actions.choices.items():
        if name == "list":
            action.add_argument("--owner", default=None, help="only this owner's (admin)")
            action.add_argument("--json", action="store_true", help="print the raw JSON")
        else:
            action.add_argument("id", metavar="SUB_ID")
    commands["subscriptions"] = reporting(cmd_subscriptions)

    p = sub.add_parser("deliveries", help="a subscription's delivery attempts, newest first")
    client_flags(p)
    p.add_argument("id", metavar="SUB_ID")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    commands["deliveries"] = reporting(cmd_deliveries)

    p = sub.add_parser("replay", help="deliver again a subscription's events since a time")
    client_flags(p)
    p.add_argument("id", metavar="SUB_ID")
    p.add_argument(
        "--since",
        required=True,
        metavar="TIME",
        help="an RFC 3339 time with a zone (2024-05-01T00:00:00Z) or an age: 30m, 2h, 1d",
    )
    commands["replay"] = reporting(cmd_replay)

    p = sub.add_parser("dead-letters", help="list or redrive deliveries that ran out of retries")
    actions = _actions(
        p,
        "dead_letters_command",
        {
            "list": "list dead letters, newest first (the default action)",
            "redrive": "queue dead letters again",
        },
    )
    for name, action in actions.choices.items():
        if name == "list":
            action.add_argument("--limit", type=int, default=100, help="default 100")
            action.add_argument("--json", action="store_true", help="print the raw JSON")
        else:
            action.add_argument("ids", nargs="*", metavar="ID")
            action.add_argument("--all", action="store_true", help="every dead letter (to 1000)")
    commands["dead-letters"] = reporting(cmd_dead_letters)


def cmd_subscribe(args: argparse.Namespace, env: dict[str, str]) -> int:
    body: dict[str, Any] = {"sink": args.sink, "types": args.types}
    filters: list[Any] = []
    for raw in args.filters:
        try:
            found = json.loads(raw)
        except json.JSONDecodeError as exc:
            print(f"incidents: --filter {raw!r} is not JSON: {exc}", file=sys.stderr)
            return 2
        filters += found if isinstance(found, list) else [found]
    headers = pairs(args.header, "--header")
    if headers is None:
        return 2
    if filters:
        body["filters"] = filters
    if headers:
        body["protocolsettings"] = {"headers": headers}
    if args.source is not None:
        body["source"] = args.source
    if args.description is not None:
        body["description"] = args.description
    if args.mode is not None or args.handshake:
        body["config"] = {"mode": args.mode or "structured", "handshake": args.handshake}
    if args.format is not None:
        body["format"] = args.format
    if args.formatsettings is not None:
        raw = args.formatsettings
        try:
            if raw.startswith("@"):
                raw = Path(raw[1:]).read_text()
            body["formatsettings"] = json.loads(raw)
        except (OSError, json.JSONDecodeError) as exc:
            print(f"incidents: --formatsettings is not JSON (or a readable file): {exc}",
                  file=sys.stderr)  # fmt: skip
            return 2
    response = Gateway.of(args, env).request("POST", "/v1/subscriptions", json=body)
    code = print_response(response)
    if code == 0:
        print("The secret above is shown only this once; store it now.", file=sys.stderr)
        created = response.json()
        if created.get("status") != "active":
            print(f"incidents: created disabled: {created.get('reason')}", file=sys.stderr)
    return code


def cmd_subscriptions(args: argparse.Namespace, env: dict[str, str]) -> int:
    gateway, action = Gateway.of(args, env), args.subscriptions_command or "list"
    if action == "list":
        owner = getattr(args, "owner", None)
        params = {} if owner is None else {"owner": owner}
        response = gateway.request("GET", "/v1/subscriptions", params=params)
        if not response.is_success or getattr(args, "json", False):
            return print_response(response)
        rows = [
            [s["id"], s["status"], s["sink"], ",".join(s["types"]) or "*", cell(s["description"])]
            for s in response.json()["subscriptions"]
        ]
        print_table(["ID", "STATUS", "SINK", "TYPES", "DESCRIPTION"], rows)
        return 0
    path = f"/v1/subscriptions/{args.id}"
    if action == "show":
        return print_response(gateway.request("GET", path))
    if action == "delete":
        response = gateway.request("DELETE", path)
        if response.status_code != 204:
            return print_problem(response)
        print(f"deleted {args.id}")
        return 0
    if action == "rotate-secret":
        code = print_response(gateway.request("POST", path + "/rotate-secret"))
        if code == 0:
            print("The new secret is shown only this once; store it now.", file=sys.stderr)
        return code
    wanted = "active" if action == "enable" else "disabled"
    response = gateway.request("PATCH", path, json={"status": wanted})
    if not response.is_success:
        return print_problem(response)
    sub = response.json()
    reason = f" ({sub['reason']})" if sub.get("reason") else ""
    print(f"{sub['id']} is {sub['status']}{reason}")
    return 0 if sub["status"] == wanted else 1  # a refused handshake leaves it disabled


def cmd_deliveries(args: argparse.Namespace, env: dict[str, str]) -> int:
    response = Gateway.of(args, env).request(
        "GET", f"/v1/subscriptions/{args.id}/deliveries", params={"limit": args.limit}
    )
    if not response.is_success or args.json:
        return print_response(response)
    log = response.json()
    attempts = log["attempts"]
    print(f"{log['subscription']} ({log['status']}): {len(attempts)} attempt(s), newest first")
    if attempts:
        rows = [
            [
                when(a.get("time")),
                cell(a.get("outcome")),
                cell(a.get("status_code")),
                "-" if a.get("latency_ms") is None else f"{a['latency_ms']} ms",
                cell(a.get("error")),
                when(a.get("next_attempt")),
            ]
            for a in attempts
        ]
        print_table(["TIME", "OUTCOME", "CODE", "LATENCY", "ERROR", "NEXT ATTEMPT"], rows)
    return 0


def since_time(raw: str, now: datetime) -> str:
    """An age such as ``2h`` becomes the time that long before ``now``; anything else goes
    to the gateway as given, for it to judge."""
    found = _AGE.match(raw.strip())
    if found is None:
        return raw
    ago = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    return (now - ago).isoformat()


def cmd_replay(args: argparse.Namespace, env: dict[str, str]) -> int:
    since = since_time(args.since, datetime.now(UTC))
    response = Gateway.of(args, env).request(
        "POST", f"/v1/subscriptions/{args.id}/replay", json={"since": since}
    )
    if not response.is_success:
        return print_problem(response)
    done = response.json()
    span = (
        f" (sequences {done['first_sequence']}..{done['last_sequence']})" if done["queued"] else ""
    )
    print(f"queued {done['queued']} event(s) since {since} for {done['subscription']}{span}")
    return 0


def cmd_dead_letters(args: argparse.Namespace, env: dict[str, str]) -> int:
    gateway = Gateway.of(args, env)
    if args.dead_letters_command != "redrive":
        limit = getattr(args, "limit", 100)
        response = gateway.request("GET", "/v1/dead-letters", params={"limit": limit})
        if not response.is_success or getattr(args, "json", False):
            return print_response(response)
        rows = [
            [
                d["id"],
                d["subscription"],
                cell(d["incident"]),
                str(d["attempts"]),
                cell(d["last_status_code"]),
                cell(d["reason"]),
            ]
            for d in response.json()["dead_letters"]
        ]
        print_table(["ID", "SUBSCRIPTION", "INCIDENT", "ATTEMPTS", "CODE", "REASON"], rows)
        return 0
    if bool(args.ids) == args.all:
        print("incidents: name the dead letters to redrive, or pass --all", file=sys.stderr)
        return 2
    ids = list(args.ids)
    if args.all:
        response = gateway.request("GET", "/v1/dead-letters", params={"limit": 1000})
        if not response.is_success:
            return print_problem(response)
        ids = [d["id"] for d in response.json()["dead_letters"]]
        if not ids:
            print("no dead letters")
            return 0
    failed = 0
    for delivery_id in ids:
        response = gateway.request("POST", f"/v1/dead-letters/{delivery_id}/redrive")
        if response.status_code == 202:
            print(f"redriven {delivery_id}")
        else:
            failed += print_problem(response)
    if failed:
        print(f"incidents: {failed} of {len(ids)} not redriven", file=sys.stderr)
    return 1 if failed else 0
