"""``incidents settings``: every setting with the value it takes here, or (``--markdown``) the
README's settings table, both from the one table in :mod:`incidents.settings`."""

from __future__ import annotations

import argparse

from incidents.cli.commands import Command, print_table
from incidents.settings import SETTINGS, Settings, env_text


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    p = sub.add_parser(
        "settings", help="every setting with its value here (from flags and environment)"
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the README's settings table instead"
    )
    commands["settings"] = cmd_settings


def cmd_settings(args: argparse.Namespace, env: dict[str, str]) -> int:
    """The settings table as Markdown, or each setting with the value it takes here."""
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    settings = Settings.from_env(env)
    rows = []
    for row in SETTINGS:
        value = getattr(settings, row.field)
        text = "(set)" if row.env == "INCIDENTS_ADMIN_TOKEN" and value else env_text(value)
        rows.append((row.env, row.flag, text))
    print_table(("variable", "flag", "value"), rows)
    return 0


def markdown_table() -> str:
    """The README's settings table, one row per setting, in table order."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for row in SETTINGS:
        plain = row.shown is not None or row.default is None  # already Markdown, or "unset"
        default = row.default_text if plain else f"`{row.default_text}`"
        lines.append(f"| `{row.env}` | {default} | {row.help} |")
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str, table: str) -> str:
    """``readme`` with its settings table (from the ``| variable |`` header to the first line
    that is not a row) replaced by ``table``."""
    lines = readme.splitlines(keepends=True)
    start = lines.index(table.splitlines(keepends=True)[0])
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[:start]) + table + "".join(lines[end:])
