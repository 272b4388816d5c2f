"""Connector secrets through the real API: write-only on every read, kept by a "***" sent
back, sealed in Redis under INCIDENTS_SECRET_KEY, and refused (naming the setting) when no
key is set; the registry's format and formatsettings validation at registration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.cli.runner import _check_secret_key
from incidents.settings import Settings, SettingsError
from incidents.store import keys
from incidents.store.secret_box import new_key
from tests.conftest import ADMIN_TOKEN
from tests.support import assert_problem

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
    for key in redis_client.scan_iter():
        if redis_client.type(key) == b"hash":
            assert not any(PASSWORD.encode() in v for v in redis_client.hgetall(key).values())


def test_a_patch_sending_stars_back_keeps_the_stored_password(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """A PATCH that sends *** (or leaves formatsettings out) keeps the sealed password; a new
    password replaces it; *** where nothing is stored is a 400 at its pointer."""
    sub = client.post("/v1/subscriptions", json=SNOW).json()
    key = keys.subscription(sub["id"])
    sealed = redis_client.hget(key, "spec")
    assert (
        client.patch(f"/v1/subscriptions/{sub['id']}", json={"description": "x"}).status_code == 200
    )
    assert redis_client.hget(key, "spec") != sealed  # description changed ...
    before = sealed or b""
    after = redis_client.hget(key, "spec") or b""
    assert (
        before.split(b"sealed:v1:")[1][:40] == after.split(b"sealed:v1:")[1][:40]
    )  # ... same seal
    shown = client.get(f"/v1/subscriptions/{sub['id']}").json()["formatsettings"]
    patched = client.patch(f"/v1/subscriptions/{sub['id']}", json={"formatsettings": shown})
    assert patched.status_code == 200, patched.text
    assert (redis_client.hget(key, "spec") or b"").split(b"sealed:v1:")[1][:40] == after.split(
        b"sealed:v1:"
    )[1][:40]
    fresh = {"auth": {"basic": {"username": "svc-incidents", "password": "new-pass-123"}}}
    assert (
        client.patch(f"/v1/subscriptions/{sub['id']}", json={"formatsettings": fresh}).status_code
        == 200
    )
    assert b"new-pass-123" not in (redis_client.hget(key, "spec") or b"")
    bearer = {"auth": {"bearer": "***"}}
    refused = client.patch(f"/v1/subscriptions/{sub['id']}", json={"formatsettings": bearer})
    body = assert_problem(refused, 400, "invalid-request")
    assert [e["pointer"] for e in body["errors"]] == ["/formatsettings/auth/bearer"]


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


@pytest.fixture
def keyless(settings: Settings, shared_server: Any) -> Iterator[httpx.Client]:
    app = create_app(settings.replace(secret_key=None))
    with (
        shared_server.mounted(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        ) as c,
    ):
        yield c


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


def test_serve_and_worker_refuse_to_start_without_the_key_once_secrets_are_stored(
    client: httpx.Client, settings: Settings
) -> None:
    """Once Redis holds a sealed secret, the start-up check without a key fails naming
    INCIDENTS_SECRET_KEY (serve and worker exit 2 on it); with the key it passes."""
    _check_secret_key(settings.replace(secret_key=None), "serve")  # nothing stored yet
    assert client.post("/v1/subscriptions", json=SNOW).status_code == 201
    with pytest.raises(SettingsError, match="INCIDENTS_SECRET_KEY is not set"):
        _check_secret_key(settings.replace(secret_key=None), "worker")
    _check_secret_key(settings, "serve")
