"""``incidents policy check`` and ``incidents principal add|list|revoke``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from incidents.cli.commands import (
    Command,
    Gateway,
    client_flags,
    print_response,
    reporting,
    setting_flags,
)
from incidents.model.principal import CLEARANCES, ROLES
from incidents.settings import Settings


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    p = sub.add_parser("policy", help="check the policy files")
    actions = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="validate every policy file as start-up would, without starting"
    )
    setting_flags(check)
    commands["policy"] = cmd_policy

    p = sub.add_parser("principal", help="manage API principals (admin)")
    actions = p.add_subparsers(dest="principal_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a principal; prints its token once")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--role",
        action="append",
        required=True,
        choices=ROLES,
        help="repeatable",
    )
    add.add_argument("--tenant", default=None, help="default: the gateway's default tenant")
    add.add_argument("--clearance", default=None, choices=CLEARANCES)
    add.add_argument("--restricted", action="store_true", help="grant restricted access")
    add.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="PATTERN",
        help="an event-type pattern it may publish, e.g. 'im.alert.*' (repeatable)",
    )
    lst = actions.add_parser("list", help="list principals (tokens are never shown again)")
    revoke = actions.add_parser("revoke", help="revoke a principal and its token at once")
    revoke.add_argument("id")
    for action in (add, lst, revoke):
        client_flags(action)
        setting_flags(action)
    commands["principal"] = cmd_principal


def cmd_policy(args: argparse.Namespace, env: dict[str, str]) -> int:
    from incidents.policy.files import PolicyError, load_policy_files

    settings = Settings.from_env(env)
    try:
        loaded = load_policy_files(settings.policies_dir, settings.schemas_dir)
    except PolicyError as exc:
        print(f"incidents: invalid policy: {exc}", file=sys.stderr)
        return 1
    policy, alerts = loaded.policy, loaded.alerts
    print(
        f"{len(policy.files)} policy file(s) OK in {settings.policies_dir}: "
        f"{len(policy.defaults)} default(s), {len(policy.rules)} rule(s)"
    )
    for rule in policy.rules:
        action = (
            f"reject: {rule.reject}"
            if rule.reject
            else (
                "require "
                + ", ".join(
                    f"{k}>={v}"
                    for k, v in (("dataclass", rule.data_class), ("visibility", rule.visibility))
                    if v
                )
            )
        )
        print(f"  {rule.name}  ({rule.origin})  {action}")
    threshold = alerts.declare_incident_at.value if alerts.declare_incident_at else "never"
    print(
        f"alerts: declare an incident at {threshold} or worse, "
        f"default severity {alerts.default_severity.value}, "
        f"{len(alerts.grafana_signing)} Grafana signing secret(s)"
    )
    return 0


@reporting
def cmd_principal(args: argparse.Namespace, env: dict[str, str]) -> int:
    gateway = Gateway.of(args, env)
    base = "/v1/principals"
    if args.principal_command == "add":
        body: dict[str, Any] = {"name": args.name, "roles": args.role, "publish": args.publish}
        if args.tenant is not None:
            body["tenant"] = args.tenant
        if args.clearance is not None:
            body["clearance"] = args.clearance
        if args.restricted:
            body["restricted"] = True
        response = gateway.request("POST", base, json=body)
        code = print_response(response)
        if response.status_code == 201:
            print("The token above is shown only this once; store it now.", file=sys.stderr)
        return code
    if args.principal_command == "list":
        return print_response(gateway.request("GET", base))
    response = gateway.request("DELETE", f"{base}/{args.id}")
    if response.status_code == 204:
        print(f"revoked {args.id}")
        return 0
    return print_response(response)
