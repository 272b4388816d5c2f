"""Connector secrets through the real API: write-only on every read, kept by a "***" sent
back, sealed in Redis under INCIDENTS_SECRET_KEY, and refused (naming the setting) when no
key is set; the registry's format and formatsettings validation at registration."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from incidents.cli.main import main
from incidents.cli.runner import _check_secret_key, _secret_key
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.secret_box import SecretUnreadable, new_key, secret_box
from incidents.subscriptions.secret_fields import opened, value_at
from tests.support import ADMIN_TOKEN, assert_problem, keys_holding

PASSWORD = "hunter2-very-secret"
SNOW: dict[str, Any] = {
    "sink": "https://acme.service-now.com",
    "format": "servicenow",
    "types": ["im.incident.*"],
    "formatsettings": {
        "auth": {"basic": {"username": "svc-incidents", "password": PASSWORD}},
        "fields": {"assignment_group": "Operations"},
    },
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(secret_key=new_key())


def test_reads_show_the_password_as_stars_and_redis_never_holds_it(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Create, read and list show the password as ***; the raw Redis hash does not hold it."""
    created = client.post("/v1/subscriptions", json=SNOW)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["format"] == "servicenow"
    assert sub["formatsettings"]["auth"]["basic"] == {
        "username": "svc-incidents",
        "password": "***",
    }
    assert sub["formatsettings"]["fields"] == {"assignment_group": "Operations"}
    read = client.get(f"/v1/subscriptions/{sub['id']}").json()
    assert read["formatsettings"]["auth"]["basic"]["password"] == "***"
    listed = client.get("/v1/subscriptions").text
    assert PASSWORD not in listed and PASSWORD not in created.text
    raw = redis_client.hgetall(keys.subscription(sub["id"]))
    assert raw and not any(PASSWORD.encode() in v for v in raw.values())
    assert b"sealed:v1:" in raw[b"spec"]
    assert keys_holding(redis_client, PASSWORD) == []


def stored_settings(redis_client: redis.Redis, sub_id: str) -> dict[str, Any]:
    spec = json.loads(redis_client.hget(keys.subscription(sub_id), "spec") or b"{}")
    found: dict[str, Any] = spec["formatsettings"]
    return found


def password_of(redis_client: redis.Redis, sub_id: str, settings: Settings) -> str:
    """The stored password, opened with the key (as a worker opens it)."""
    sealed = stored_settings(redis_client, sub_id)
    assert sealed["auth"]["basic"]["password"].startswith("sealed:v1:")
    box = secret_box(settings.secret_key)
    found = opened(sealed, ["/auth/basic/password"], sub_id, box)
    return str(value_at(found, "/auth/basic/password"))


def test_a_patch_sending_stars_back_keeps_the_stored_password(
    client: httpx.Client, redis_client: redis.Redis, settings: Settings
) -> None:
    """A PATCH that sends *** back (or leaves formatsettings out) keeps the stored password;
    a new password replaces it; *** where nothing is stored is a 400 at its pointer."""
    sub_id = client.post("/v1/subscriptions", json=SNOW).json()["id"]
    path = f"/v1/subscriptions/{sub_id}"
    assert client.patch(path, json={"description": "x"}).status_code == 200
    assert password_of(redis_client, sub_id, settings) == PASSWORD
    shown = client.get(path).json()["formatsettings"]
    shown["fields"] = {"assignment_group": "Network"}
    patched = client.patch(path, json={"formatsettings": shown})
    assert patched.status_code == 200, patched.text
    assert patched.json()["formatsettings"]["auth"]["basic"]["password"] == "***"
    assert stored_settings(redis_client, sub_id)["fields"] == {"assignment_group": "Network"}
    assert password_of(redis_client, sub_id, settings) == PASSWORD
    fresh = {"auth": {"basic": {"username": "svc-incidents", "password": "new-pass-123"}}}
    assert client.patch(path, json={"formatsettings": fresh}).status_code == 200
    assert password_of(redis_client, sub_id, settings) == "new-pass-123"
    bearer = {"auth": {"bearer": "***"}}
    refused = client.patch(path, json={"formatsettings": bearer})
    body = assert_problem(refused, 400, "invalid-request")
    assert [e["pointer"] for e in body["errors"]] == ["/formatsettings/auth/bearer"]
    assert password_of(redis_client, sub_id, settings) == "new-pass-123"


def test_a_sealed_secret_does_not_open_in_another_subscription(
    client: httpx.Client, redis_client: redis.Redis, settings: Settings
) -> None:
    """A sealed password copied into another subscription's hash does not open there."""
    first = client.post("/v1/subscriptions", json=SNOW).json()["id"]
    second = client.post("/v1/subscriptions", json=SNOW).json()["id"]
    copied = stored_settings(redis_client, first)
    box = secret_box(settings.secret_key)
    with pytest.raises(SecretUnreadable, match="cannot be decrypted"):
        opened(copied, ["/auth/basic/password"], second, box)


def test_an_unknown_format_or_bad_settings_are_400_naming_each_field(client: httpx.Client) -> None:
    """An unknown format is a 400 at /format listing the choices; the channel's own checks
    come back with JSON pointers; cloudevents takes no formatsettings."""
    bad = client.post("/v1/subscriptions", json={**SNOW, "format": "fax"})
    body = assert_problem(bad, 400, "invalid-request")
    assert [e["pointer"] for e in body["errors"]] == ["/format"]
    assert "servicenow" in body["errors"][0]["detail"] and "teams" in body["errors"][0]["detail"]
    no_auth = client.post(
        "/v1/subscriptions", json={**SNOW, "formatsettings": {"auth": {"basic": {}}}}
    )
    pointers = [e["pointer"] for e in assert_problem(no_auth, 400, "invalid-request")["errors"]]
    assert "/formatsettings/auth/basic/username" in pointers
    assert "/formatsettings/auth/basic/password" in pointers
    plain = client.post(
        "/v1/subscriptions", json={"sink": "https://x.example", "formatsettings": {"a": 1}}
    )
    assert [e["pointer"] for e in assert_problem(plain, 400, "invalid-request")["errors"]] == [
        "/formatsettings"
    ]
    pd = {"sink": "https://events.pagerduty.com/v2/enqueue", "format": "pagerduty"}
    missing = client.post("/v1/subscriptions", json=pd)
    assert [e["pointer"] for e in assert_problem(missing, 400, "invalid-request")["errors"]] == [
        "/formatsettings/routing_key"
    ]


def test_a_secret_without_a_key_is_a_503_naming_the_setting(
    keyless: httpx.Client, redis_client: redis.Redis
) -> None:
    """With no INCIDENTS_SECRET_KEY a subscription holding a secret is refused (503 naming
    the setting) and nothing is stored; one without secrets (Slack) is registered."""
    refused = keyless.post("/v1/subscriptions", json=SNOW)
    body = assert_problem(refused, 503, "service-unavailable")
    assert "INCIDENTS_SECRET_KEY" in body["detail"]
    assert body["errors"][0]["pointer"] == "/formatsettings/auth/basic/password"
    assert keyless.get("/v1/subscriptions").json()["subscriptions"] == []
    slack = {"sink": "https://hooks.slack.com/services/T0/B0/X", "format": "slack"}
    assert keyless.post("/v1/subscriptions", json=slack).status_code == 201


def test_serve_and_worker_exit_2_without_the_key_once_secrets_are_stored(
    client: httpx.Client, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once Redis holds a sealed secret, `incidents serve` and `incidents worker` without
    INCIDENTS_SECRET_KEY exit 2 naming it; before that the check passes, and with the key too."""
    _check_secret_key(settings.replace(secret_key=None), "serve")  # nothing stored yet
    assert client.post("/v1/subscriptions", json=SNOW).status_code == 201
    env = {
        "INCIDENTS_ADMIN_TOKEN": ADMIN_TOKEN,
        "INCIDENTS_REDIS_URL": str(settings.redis_url),
        "INCIDENTS_SCHEMAS_DIR": str(settings.schemas_dir),
        "INCIDENTS_POLICIES_DIR": str(settings.policies_dir),
    }
    for command in ("serve", "worker"):
        assert main([command], environ=env) == 2
        err = capsys.readouterr().err
        assert "INCIDENTS_SECRET_KEY is not set" in err and f"`{command}`" in err
    _check_secret_key(settings, "worker")


def test_dev_generates_a_key_once_and_keeps_it_readable_by_its_owner_only(tmp_path: Path) -> None:
    """`incidents dev` makes a valid key in its data folder (mode 600) and reuses it."""
    settings = Settings(data_dir=tmp_path / "data")
    key = _secret_key(settings)
    path = tmp_path / "data" / "secret-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings.from_env({"INCIDENTS_SECRET_KEY": key}).secret_key == key
    assert _secret_key(settings) == key
    assert _secret_key(settings.replace(secret_key=new_key())) != key
