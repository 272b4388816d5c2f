"""``incidents``: run the gateway (dev, serve, worker) and do by hand what people do by hand."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from incidents import __version__
from incidents.model.schemas import SchemaLoadError
from incidents.policy.files import PolicyError
from incidents.settings import SETTINGS, SettingsError
from incidents.store.redis_memory import EvictionPolicyRefused

Command = Callable[[argparse.Namespace, dict[str, str]], int]
COMMANDS: dict[str, Command] = {}


def add_setting_flags(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    # On a nested action the default is SUPPRESS, so a flag given before the action stays.
    default = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for row in SETTINGS:
        group.add_argument(
            row.flag,
            dest="setting_" + row.env,
            metavar="VALUE",
            default=default,
            help=f"{row.env}, default {row.default_text}: {row.help}".replace("`", ""),
        )


def merged_environ(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    merged = dict(environ)
    for row in SETTINGS:
        value = getattr(args, "setting_" + row.env, None)
        if value is not None:
            merged[row.env] = value
    return merged


def build_parser() -> argparse.ArgumentParser:
    from incidents.cli import (
        archive_commands,
        commands,
        policy_commands,
        runner,
        settings_commands,
    )

    parser = argparse.ArgumentParser(
        prog="incidents", description="Gateway and router for incident-management events."
    )
    parser.add_argument("--version", action="version", version=f"incidents {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (runner, commands, policy_commands, settings_commands, archive_commands):
        module.register(sub, COMMANDS)
    for subparser in sub.choices.values():
        add_setting_flags(subparser)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Options are taken only as spelt in full: with abbreviations, a new setting flag could
    make an existing option ambiguous (``--all`` and ``--allow-...``)."""
    parser.allow_abbrev = False
    for action in parser._actions:  # argparse exposes its subparsers no other way
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = merged_environ(args, os.environ if environ is None else environ)
    from incidents.store import keys
    from incidents.store.redis_cluster import is_cluster_url

    # A command talks to one deployment: its global keys are named for it from the start.
    cluster = is_cluster_url(env.get("INCIDENTS_REDIS_URL", "").strip())
    try:
        with keys.cluster_names(cluster):
            return COMMANDS[args.command](args, env)
    except SettingsError as exc:
        print(f"incidents: bad setting: {exc}", file=sys.stderr)
        return 2
    except (SchemaLoadError, PolicyError, EvictionPolicyRefused) as exc:
        print(f"incidents: cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
