"""``incidents export`` and ``incidents import``: a gateway's Redis written out as CloudEvents
JSON Lines, and such files (exports, or the archive retention writes) read back in. Both talk
to Redis directly (``INCIDENTS_REDIS_URL``): backups, restores and moves to a new Redis.
``import`` writes into the partitions ``INCIDENTS_PARTITIONS`` says (recorded in the Redis
it imports into, as a gateway's first start does), whatever the count of the deployment the
files came from: exporting one deployment and importing it into a new one with more
partitions is how a deployment grows past one partition."""

from __future__ import annotations

import argparse
import gzip
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from incidents.archive.export import Selection, export_records
from incidents.archive.records import RecordError, encode
from incidents.archive.restore import Restorer, read_files
from incidents.cli.commands import Command
from incidents.cli.preflight import check_partitions
from incidents.model.timestamps import parse_time
from incidents.settings import Settings, SettingsError
from incidents.store.redis import UNAVAILABLE, connect


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: dict[str, Command]
) -> None:
    p = sub.add_parser(
        "export", help="write the events, incidents and alerts in Redis as CloudEvents JSON Lines"
    )
    p.add_argument("--since", type=_time, default=None, help="events accepted at or after T")
    p.add_argument("--until", type=_time, default=None, help="events accepted before T")
    p.add_argument("--incident", default=None, help="only this incident and its timeline")
    p.add_argument(
        "--output", type=Path, default=None, help="file to write (.gz: gzip; default stdout)"
    )
    commands["export"] = cmd_export
    p = sub.add_parser("import", help="read export or archive files into Redis (idempotent)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JSON Lines, or .gz")
    p.add_argument(
        "--deliver", action="store_true", help="fan the imported events out to subscriptions"
    )
    commands["import"] = cmd_import


def _time(raw: str) -> datetime:
    """An RFC 3339 time, or a date (midnight UTC)."""
    try:
        found = parse_time(raw if "T" in raw or " " in raw else raw + "T00:00:00+00:00")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)"
        ) from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _settings(env: dict[str, str]) -> tuple[Settings, str]:
    """The settings, and the Redis URL they name (SettingsError when none)."""
    settings = Settings.from_env(env)
    url = settings.redis_url
    if url is None:
        raise SettingsError("INCIDENTS_REDIS_URL is not set: point it at the gateway's Redis")
    return settings, url


def cmd_export(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings, url = _settings(env)
    try:
        client = connect(url)  # a cluster's client asks for the slots at once
    except UNAVAILABLE as exc:
        print(f"incidents: cannot read Redis: {exc}", file=sys.stderr)
        return 1
    selection = Selection(args.since, args.until, args.incident)
    written = 0
    try:
        with ExitStack() as stack:
            out: IO[bytes]
            if args.output is None:
                out = sys.stdout.buffer
            elif args.output.suffix == ".gz":
                out = stack.enter_context(gzip.open(args.output, "wb"))
            else:
                out = stack.enter_context(args.output.open("wb"))
            for record in export_records(client, selection, settings.layout):
                out.write(encode(record))
                written += 1
            out.flush()
    except UNAVAILABLE as exc:
        print(f"incidents: cannot read Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"exported {written} record(s)", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, env: dict[str, str]) -> int:
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"incidents: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    settings, url = _settings(env)
    check_partitions(settings)  # PartitionsRefused: that Redis holds another number's data
    try:
        client = connect(url)  # a cluster's client asks for the slots at once
    except UNAVAILABLE as exc:
        print(f"incidents: cannot write to Redis: {exc}", file=sys.stderr)
        return 1
    restorer = Restorer(client, deliver=args.deliver, layout=settings.layout)
    try:
        counts = restorer.restore(read_files(args.files))
    except RecordError as exc:
        print(f"incidents: {exc} (what came before it is imported)", file=sys.stderr)
        _report(restorer.counts)
        return 1
    except UNAVAILABLE as exc:
        print(f"incidents: cannot write to Redis: {exc}", file=sys.stderr)
        _report(restorer.counts)
        return 1
    finally:
        client.close()
    _report(counts)
    if counts["alerts_apart"]:
        print(
            f"incidents: {counts['alerts_apart']} alert(s) are linked to an incident that is in"
            f" another of the {settings.partitions} partitions: such an alert goes on without"
            " it (its events update the alert and are attached to no incident)",
            file=sys.stderr,
        )
    return 0


def _report(counts: dict[str, int]) -> None:
    names = (
        "events",
        "duplicates",
        "renumbered",
        "incidents",
        "incidents_unchanged",
        "alerts",
        "alerts_unchanged",
        "skipped",
    )
    print("imported: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in names))
