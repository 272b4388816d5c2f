from __future__ import annotations

from pathlib import Path

import pytest

from incidents.settings import DEFAULT_RETRY_SCHEDULE, Settings, SettingsError


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
