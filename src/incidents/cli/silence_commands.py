"""``incidents silence add|list|expire``: hold deliveries for a while, by hand."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from incidents.cli.commands import (
    Command,
    Gateway,
    cell,
    print_problem,
    print_response,
    print_table,
    reporting,
    when,
)
from incidents.cli.delivery_commands import _actions
from incidents.silences.recurrence import weekly_input
from incidents.usecases.silence_actions import silence_document


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    p = sub.add_parser("silence", help="hold deliveries for a while: add, list or expire")
    actions = _actions(
        p,
        "silence_command",
        {
            "add": "silence the deliveries of matching events",
            "list": "list silences (the default action)",
            "expire": "end silences now",
        },
    )
    add = actions.choices["add"]
    add.add_argument(
        "--filter",
        required=True,
        metavar="JSON",
        help='the events to silence, e.g. \'{"exact": {"imservice": "payments"}}\'',
    )
    add.add_argument("--comment", required=True, help="why (shown with every silenced delivery)")
    add.add_argument(
        "--ends", required=True, metavar="TIME", help="an RFC 3339 time, or a length: 30m, 2h, 7d"
    )
    add.add_argument("--starts", default=None, metavar="TIME", help="an RFC 3339 time (now)")
    add.add_argument(
        "--subscription",
        action="append",
        default=[],
        dest="subscriptions",
        metavar="SUB_ID",
        help="only this subscription's deliveries (repeatable; required unless admin)",
    )
    add.add_argument(
        "--weekly", default=None, metavar="DAYS", help="recur on these days only: sat,sun"
    )
    add.add_argument(
        "--window", default=None, metavar="HH:MM-HH:MM", help="with --weekly: 02:00-04:00"
    )
    add.add_argument("--timezone", default="UTC", help="with --weekly: an IANA zone (UTC)")
    listing = actions.choices["list"]
    listing.add_argument("--state", choices=("pending", "active", "expired"), default=None)
    listing.add_argument("--json", action="store_true", help="print the raw JSON")
    actions.choices["expire"].add_argument("ids", nargs="+", metavar="SILENCE_ID")
    commands["silence"] = reporting(cmd_silence)


def _body(args: argparse.Namespace) -> dict[str, object] | str:
    """The request body (as the console's form makes it too), or what is wrong with the
    flags."""
    try:
        expression = json.loads(args.filter)
    except json.JSONDecodeError as exc:
        return f"--filter {args.filter!r} is not JSON: {exc}"
    if (args.weekly is None) != (args.window is None):
        return "--weekly and --window go together"
    recurrence = None
    if args.weekly is not None:
        try:
            recurrence = weekly_input(args.weekly, args.window, args.timezone)
        except ValueError as exc:
            return f"--window: {exc}"
    return silence_document(
        expression,
        args.comment,
        args.ends,
        datetime.now(UTC),
        starts=args.starts,
        subscriptions=args.subscriptions,
        recurrence=recurrence,
    )


def cmd_silence(args: argparse.Namespace, env: dict[str, str]) -> int:
    gateway, action = Gateway.of(args, env), args.silence_command or "list"
    if action == "add":
        body = _body(args)
        if isinstance(body, str):
            print(f"incidents: {body}", file=sys.stderr)
            return 2
        return print_response(gateway.request("POST", "/v1/silences", json=body))
    if action == "expire":
        failed = 0
        for silence_id in args.ids:
            response = gateway.request("DELETE", f"/v1/silences/{silence_id}")
            if response.is_success:
                print(f"expired {silence_id}")
            else:
                failed += print_problem(response)
        return 1 if failed else 0
    state = getattr(args, "state", None)
    params = {} if state is None else {"state": state}
    response = gateway.request("GET", "/v1/silences", params=params)
    if not response.is_success or getattr(args, "json", False):
        return print_response(response)
    rows = [
        [
            s["id"],
            s["state"],
            when(s["starts_at"]),
            when(s["ends_at"]),
            json.dumps(s["filter"]),
            ",".join(s["subscriptions"]) or "*",
            cell(s["comment"]),
        ]
        for s in response.json()["silences"]
    ]
    print_table(["ID", "STATE", "STARTS", "ENDS", "FILTER", "SUBSCRIPTIONS", "COMMENT"], rows)
    return 0
