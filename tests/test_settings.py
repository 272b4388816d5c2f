from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from incidents.cli.main import build_parser, main, merged_environ
from incidents.cli.settings_commands import markdown_table, readme_with_table
from incidents.settings import (
    DEFAULT_RETRY_SCHEDULE,
    SETTINGS,
    Setting,
    Settings,
    SettingsError,
    env_text,
)

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_follow_the_design() -> None:
    """With an empty environment the settings have the documented defaults."""
    s = Settings.from_env({})
    assert s.port == 8080
    assert s.max_body_bytes == 1024 * 1024
    assert s.retry_schedule == DEFAULT_RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert s.delivery_timeout == 15
    assert s.allow_private_sinks is False
    assert s.redis_url is None


def test_folders_in_the_working_directory_are_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset, the schemas and policies dirs are ./schemas and ./policies when those exist."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "policies").mkdir()
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.schemas_dir == Path("schemas") and s.policies_dir == Path("policies")


def test_the_packaged_folders_are_the_default_anywhere_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset, and with no such folders here, the schemas and policies shipped in the package."""
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert (s.schemas_dir / "policy.json").is_file()
    assert (s.schemas_dir / "events" / "im.incident.declare.json").is_file()
    assert (s.policies_dir / "default.yaml").is_file()
    assert (Settings().schemas_dir, Settings().policies_dir) == (s.schemas_dir, s.policies_dir)


def test_environment_values_are_parsed() -> None:
    """Every documented variable is read and converted."""
    s = Settings.from_env(
        {
            "INCIDENTS_REDIS_URL": "redis://r:6379/2",
            "INCIDENTS_ADMIN_TOKEN": "x" * 20,
            "INCIDENTS_HOST": "::",
            "INCIDENTS_PORT": "9000",
            "INCIDENTS_SCHEMAS_DIR": "/s",
            "INCIDENTS_POLICIES_DIR": "/p",
            "INCIDENTS_MAX_BODY_BYTES": "2048",
            "INCIDENTS_RETRY_SCHEDULE": "1, 2,3.5",
            "INCIDENTS_DELIVERY_TIMEOUT": "2.5",
            "INCIDENTS_ALLOW_PRIVATE_SINKS": "true",
        }
    )
    assert (s.redis_url, s.host, s.port) == ("redis://r:6379/2", "::", 9000)
    assert (s.schemas_dir, s.policies_dir) == (Path("/s"), Path("/p"))
    assert s.max_body_bytes == 2048
    assert s.retry_schedule == (1.0, 2.0, 3.5)
    assert s.delivery_timeout == 2.5
    assert s.allow_private_sinks is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INCIDENTS_PORT", "eighty"),
        ("INCIDENTS_PORT", "70000"),
        ("INCIDENTS_RETRY_SCHEDULE", "5,soon"),
        ("INCIDENTS_RETRY_SCHEDULE", "5,-1"),
        ("INCIDENTS_ALLOW_PRIVATE_SINKS", "maybe"),
        ("INCIDENTS_DELIVERY_TIMEOUT", "0"),
        ("INCIDENTS_ADMIN_TOKEN", "short"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str) -> None:
    """A bad setting fails fast with a message naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_readme_settings_table_is_the_generated_one() -> None:
    """README.md's settings table is exactly the one made from the settings table."""
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme, markdown_table()) == readme, "run scripts/settings-table"


def test_the_settings_command_prints_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    """`incidents settings --markdown` prints the table the README holds, a row per setting."""
    assert main(["settings", "--markdown"], environ={}) == 0
    printed = capsys.readouterr().out
    assert printed == markdown_table()
    assert [line.split("`")[1] for line in printed.splitlines()[2:]] == [s.env for s in SETTINGS]


def test_every_field_is_a_setting_with_a_flag() -> None:
    """Each field of Settings has one row, and its flag on every command sets its variable."""
    assert [s.field for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    parser = build_parser()
    for command in (["serve"], ["dev"], ["worker"], ["send", "--type", "t"], ["policy", "check"]):
        for row in SETTINGS:
            args = parser.parse_args([*command, row.flag, "v"])
            assert merged_environ(args, {row.env: "old"})[row.env] == "v", (command, row.flag)


@pytest.mark.parametrize("row", [s for s in SETTINGS if s.shown is None], ids=lambda s: s.env)
def test_each_documented_default_reads_back_as_the_default(row: Setting) -> None:
    """The default the README shows, given as the variable, gives the setting's default."""
    if row.default is None:
        assert getattr(Settings.from_env({}), row.field) is None
        return
    assert getattr(Settings.from_env({row.env: row.default_text}), row.field) == row.default
    assert getattr(Settings(), row.field) == row.default


def test_settings_command_shows_the_values_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    """`incidents settings` lists each variable with the value flags and environment give it,
    the admin token hidden."""
    env = {"INCIDENTS_PORT": "9000", "INCIDENTS_ADMIN_TOKEN": "secret-token-0123456789"}
    assert main(["settings", "--max-body-bytes", "4096"], environ=env) == 0
    out = capsys.readouterr().out
    assert re.search(r"^INCIDENTS_PORT\s+--port\s+9000$", out, re.M)
    assert re.search(r"^INCIDENTS_MAX_BODY_BYTES\s+--max-body-bytes\s+4096$", out, re.M)
    assert re.search(r"^INCIDENTS_RETRY_SCHEDULE\s+\S+\s+5,300,1800,", out, re.M)
    assert "secret-token" not in out and re.search(
        r"^INCIDENTS_ADMIN_TOKEN\s+\S+\s+\(set\)$", out, re.M
    )


def test_a_bad_value_is_quoted_in_the_message() -> None:
    """The message names the variable and quotes the value as given."""
    with pytest.raises(
        SettingsError, match=r"INCIDENTS_STREAM_RETENTION='10' must be at least 1000"
    ):
        Settings.from_env({"INCIDENTS_STREAM_RETENTION": "10"})
    with pytest.raises(SettingsError, match=r"INCIDENTS_BODY_TIMEOUT='soon' is not a number"):
        Settings.from_env({"INCIDENTS_BODY_TIMEOUT": "soon"})


@pytest.mark.parametrize(
    ("raw", "seconds", "shown"),
    [("90s", 90, "90s"), ("15m", 900, "15m"), ("12h", 43200, "12h"), ("30d", 2592000, "30d")],
)
def test_retention_takes_a_duration(raw: str, seconds: int, shown: str) -> None:
    """A retention is a whole number and a unit (s, m, h, d), shown back as written."""
    s = Settings.from_env({"INCIDENTS_RETENTION": raw, "INCIDENTS_INCIDENT_RETENTION": raw})
    assert s.retention.seconds == s.incident_retention.seconds == seconds
    assert env_text(s.retention) == shown


def test_retention_defaults_are_thirty_days_and_a_year() -> None:
    """Events are kept 30 days, closed incidents a year after close; no archive unless set."""
    s = Settings.from_env({})
    assert (env_text(s.retention), env_text(s.incident_retention)) == ("30d", "365d")
    assert s.archive_dir is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("59s", r"INCIDENTS_RETENTION='59s' is shorter than the least allowed, 60s"),
        ("1w", r"INCIDENTS_RETENTION='1w' is not a duration.*90s, 15m, 12h, 30d"),
        ("30", r"INCIDENTS_RETENTION='30' is not a duration"),
        ("-5m", r"INCIDENTS_RETENTION='-5m' is not a duration"),
    ],
)
def test_a_bad_retention_is_refused_clearly(value: str, message: str) -> None:
    """A retention that is no duration, or shorter than 60s, is refused with the reason."""
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"INCIDENTS_RETENTION": value})


def test_the_settings_command_shows_the_retention_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`incidents settings` lists the retention settings and the archive folder."""
    env = {"INCIDENTS_INCIDENT_RETENTION": "90d", "INCIDENTS_ARCHIVE_DIR": "/var/archive"}
    assert main(["settings", "--retention", "12h"], environ=env) == 0
    out = capsys.readouterr().out
    assert re.search(r"^INCIDENTS_RETENTION\s+--retention\s+12h$", out, re.M)
    assert re.search(r"^INCIDENTS_INCIDENT_RETENTION\s+--incident-retention\s+90d$", out, re.M)
    assert re.search(r"^INCIDENTS_ARCHIVE_DIR\s+--archive-dir\s+/var/archive$", out, re.M)
