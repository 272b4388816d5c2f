"""INCIDENTS_REDIS_URL in its redis+sentinel:// form: read once, and a bad one refused by name."""

from __future__ import annotations

import pytest

from incidents.settings import Settings, SettingsError
from incidents.store.redis import SentinelTarget


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_the_password() -> None:
    """Every sentinel, the service name, the database and the (unquoted) password are read."""
    url = "redis+sentinel://:p%40ss@10.0.0.1:26379,[::1]:26380/incidents/3"
    assert Settings.from_env({"INCIDENTS_REDIS_URL": url}).redis_url == url
    assert SentinelTarget.parse(url) == SentinelTarget(
        (("10.0.0.1", 26379), ("::1", 26380)), "incidents", 3, "p@ss"
    )


@pytest.mark.parametrize(
    ("url", "quoted"),
    [
        ("redis+sentinel://s1/incidents", "'s1'"),
        ("redis+sentinel://s1:26379", "/<service name>"),
        ("redis+sentinel://s1:26379/incidents/zero", "'zero'"),
        ("redis+sentinel://:hunter2@s1:99999/incidents", "'s1:99999'"),
    ],
)
def test_a_bad_sentinel_url_stops_start_up_quoting_the_bad_part(url: str, quoted: str) -> None:
    """A malformed redis+sentinel:// URL is a SettingsError that quotes it, password masked."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"INCIDENTS_REDIS_URL": url})
    assert quoted in str(raised.value)
    assert "INCIDENTS_REDIS_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)
