"""Subscriptions' signing secrets at rest: sealed under INCIDENTS_SECRET_KEY and bound to their
subscription, never in Redis in the clear; plain ones stored before a key was set keep
signing and are sealed in place when a worker starts with the key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from incidents.cli.preflight import seal_signing_secrets
from incidents.cli.runner import _check_secret_key
from incidents.settings import Settings, SettingsError
from incidents.store import keys
from incidents.store.secret_box import SecretBox, SecretUnreadable, decode_key, new_key
from incidents.subscriptions import signing_secrets
from incidents.subscriptions.subscription import Secret
from tests.delivery_support import Receiver, Workers, publish, start_worker, subscribe
from tests.support import (
    admin_gateway,
    event,
    keys_holding,
    wait_for,
)

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(secret_key=new_key())


def stored_secrets(redis_client: redis.Redis, sub_id: str) -> list[str]:
    raw = redis_client.hget(keys.subscription(sub_id), "secrets")
    return [value for value, _ in json.loads(raw or b"[]")]


def verifies(secret: str, rx: Receiver, path: str, event_id: str) -> bool:
    """Whether the delivery of ``event_id`` to ``path`` carries a signature by ``secret``."""
    (found,) = [r for r in rx.at(path) if r.event["id"] == event_id]
    try:
        Webhook(secret).verify(found.body, found.headers)
    except WebhookVerificationError:
        return False
    return True


def test_a_sealed_signing_secret_opens_only_in_its_own_subscription() -> None:
    """A secret sealed for one subscription opens there, not in another, and not without
    the key (the error names INCIDENTS_SECRET_KEY); plain secrets pass through as they are."""
    box = SecretBox(decode_key(new_key()))
    sealed = signing_secrets.sealed([Secret(SECRET), Secret("whsec_b2xk", 99.0)], "sub_a", box)
    assert all(s.value.startswith("sealed:v1:") for s in sealed)
    assert SECRET not in repr(sealed)
    assert signing_secrets.opened(sealed, "sub_a", box) == (
        Secret(SECRET),
        Secret("whsec_b2xk", 99.0),
    )
    with pytest.raises(SecretUnreadable, match="subscription sub_b cannot be decrypted"):
        signing_secrets.opened(sealed, "sub_b", box)
    with pytest.raises(SecretUnreadable, match="INCIDENTS_SECRET_KEY is not set"):
        signing_secrets.opened(sealed, "sub_a", None)
    assert signing_secrets.opened([Secret(SECRET)], "sub_a", None) == (Secret(SECRET),)
    assert signing_secrets.sealed([Secret(SECRET)], "sub_a", None) == (Secret(SECRET),)


def test_with_a_key_no_signing_secret_is_in_redis_and_deliveries_verify(
    client: httpx.Client, redis_client: redis.Redis, rx: Receiver, workers: Workers
) -> None:
    """With INCIDENTS_SECRET_KEY set, the secret given at creation and the one a rotation
    gives are stored sealed (no key or value in Redis holds either), and deliveries verify
    with them: during the grace period with both."""
    sub = subscribe(client, rx, "/sealed")
    first = sub["secret"]
    assert first.startswith("whsec_")
    assert all(v.startswith("sealed:v1:") for v in stored_secrets(redis_client, sub["id"]))
    publish(client, event(imincidentid="INC-S1"))
    workers.run_until(lambda: len(rx.at("/sealed")) == 1)
    assert rx.at("/sealed")[0].verified
    rotated = client.post(f"/v1/subscriptions/{sub['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["secret"]
    rx.secrets["/sealed"] = second
    (two,) = publish(client, event(imincidentid="INC-S2"))
    workers.run_until(lambda: len(rx.at("/sealed")) == 2)
    assert verifies(second, rx, "/sealed", two["id"]) and verifies(first, rx, "/sealed", two["id"])
    assert len(stored_secrets(redis_client, sub["id"])) == 2
    assert all(v.startswith("sealed:v1:") for v in stored_secrets(redis_client, sub["id"]))
    assert keys_holding(redis_client, first) == []
    assert keys_holding(redis_client, second) == []
    assert redis_client.sismember(keys.SUBSCRIPTIONS_SEALED, sub["id"])


@pytest.mark.slow
def test_plain_secrets_are_sealed_in_place_at_start_and_keep_signing_throughout(
    keyless: httpx.Client,
    redis_client: redis.Redis,
    rx: Receiver,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Secrets stored plain (a subscription and a rotation without a key) sign deliveries of
    a worker that has the key; a worker process started with the key seals them in place,
    deliveries still verify with the original secrets, and Redis holds neither in the clear."""
    sub = subscribe(keyless, rx, "/upgrade")
    old = sub["secret"]
    new = keyless.post(f"/v1/subscriptions/{sub['id']}/rotate-secret").json()["secret"]
    rx.secrets["/upgrade"] = new
    assert stored_secrets(redis_client, sub["id"]) == [new, old]  # as the old code kept them
    assert keys_holding(redis_client, old) and keys_holding(redis_client, new)
    (before,) = publish(keyless, event(imincidentid="INC-U1"))
    keyed = Workers(settings)
    try:
        keyed.run_until(lambda: len(rx.at("/upgrade")) == 1)
    finally:
        keyed.close()
    assert verifies(new, rx, "/upgrade", before["id"]) and verifies(
        old, rx, "/upgrade", before["id"]
    )
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        wait_for(
            lambda: "sealed the signing secrets of 1 subscription(s)" in log.read_text(),
            60,
            what="the worker sealing the stored secrets",
        )
        (after,) = publish(keyless, event(imincidentid="INC-U2"))
        wait_for(lambda: len(rx.at("/upgrade")) == 2, 60, what="the delivery after sealing")
    finally:
        worker.terminate()
        worker.wait(60)
    assert verifies(new, rx, "/upgrade", after["id"]) and verifies(old, rx, "/upgrade", after["id"])
    assert all(v.startswith("sealed:v1:") for v in stored_secrets(redis_client, sub["id"]))
    assert keys_holding(redis_client, old) == [] and keys_holding(redis_client, new) == []
    with pytest.raises(SettingsError, match="INCIDENTS_SECRET_KEY is not set"):
        _check_secret_key(settings.replace(secret_key=None), "worker")


def test_a_worker_without_the_key_records_a_failed_attempt_naming_it(
    client: httpx.Client, rx: Receiver, settings: Settings
) -> None:
    """A worker lacking the key cannot sign with a sealed secret: the attempt fails, saying
    which secret and which setting, and nothing unsigned is sent."""
    sub = subscribe(client, rx, "/nokey")
    publish(client, event(imincidentid="INC-NK"))
    keyless = Workers(settings.replace(secret_key=None))
    try:
        keyless.run_until(lambda: bool(keyless.deliveries(client, sub["id"])))
        attempt = keyless.deliveries(client, sub["id"])[0]
    finally:
        keyless.close()
    assert "INCIDENTS_SECRET_KEY is not set" in str(attempt["error"])
    assert f"signing secret of subscription {sub['id']}" in str(attempt["error"])
    assert rx.at("/nokey") == []


def test_without_a_key_start_up_warns_that_signing_secrets_are_unsealed(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without INCIDENTS_SECRET_KEY the start-up check warns, naming the setting; with it,
    it says nothing when there is nothing to seal."""
    seal_signing_secrets(settings.replace(secret_key=None))
    err = capsys.readouterr().err
    assert "warning" in err and "stored in Redis unsealed" in err and "INCIDENTS_SECRET_KEY" in err
    seal_signing_secrets(settings)
    assert capsys.readouterr().err == ""


def test_after_a_key_change_a_rotation_signs_again_at_once(
    client: httpx.Client,
    redis_client: redis.Redis,
    rx: Receiver,
    settings: Settings,
) -> None:
    """With INCIDENTS_SECRET_KEY replaced, a secret sealed under the old key no longer opens;
    rotating the secret under the new key makes deliveries sign and verify again at once,
    though the old secret, still in its grace period, cannot sign beside it."""
    sub = subscribe(client, rx, "/rekeyed")
    rekeyed = settings.replace(secret_key=new_key())
    with (
        admin_gateway(rekeyed) as api,
    ):
        rotated = api.post(f"/v1/subscriptions/{sub['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        rx.secrets["/rekeyed"] = rotated.json()["secret"]
        assert len(stored_secrets(redis_client, sub["id"])) == 2  # the old one, in its grace
        (sent,) = publish(api, event(imincidentid="INC-RK"))
        workers = Workers(rekeyed)
        try:
            workers.run_until(
                lambda: len(rx.at("/rekeyed")) == 1 or bool(workers.deliveries(api, sub["id"]))
            )
        finally:
            workers.close()
        assert [r.event["id"] for r in rx.at("/rekeyed")] == [sent["id"]], workers.deliveries(
            api, sub["id"]
        )
    assert verifies(rotated.json()["secret"], rx, "/rekeyed", sent["id"])


def test_a_previous_secret_that_does_not_open_is_left_out_once_the_current_one_opens() -> None:
    """A previous secret (one with a valid-until) sealed under another key is left out of the
    secrets to sign with; the current one must open, or nothing signs."""
    old_box, box = SecretBox(decode_key(new_key())), SecretBox(decode_key(new_key()))
    (old,) = signing_secrets.sealed([Secret("whsec_b2xk")], "sub_a", old_box)
    (current,) = signing_secrets.sealed([Secret(SECRET)], "sub_a", box)
    stored = [current, Secret(old.value, 99.0)]
    assert signing_secrets.opened(stored, "sub_a", box) == (Secret(SECRET),)
    with pytest.raises(SecretUnreadable, match="subscription sub_a cannot be decrypted"):
        signing_secrets.opened([current], "sub_a", old_box)


def test_answers_that_show_a_secret_are_never_stored_by_a_cache(client: httpx.Client) -> None:
    """Creating a subscription, rotating its secret and creating a principal answer with
    Cache-Control: no-store; reading a subscription does not need it."""
    created = client.post("/v1/subscriptions", json={"sink": "https://example.com/hook"})
    assert created.status_code == 201, created.text
    rotated = client.post(f"/v1/subscriptions/{created.json()['id']}/rotate-secret")
    principal = client.post("/v1/principals", json={"name": "cache-test", "roles": ["producer"]})
    for shown in (created, rotated, principal):
        assert shown.status_code in (200, 201), shown.text
        assert shown.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get(f"/v1/subscriptions/{created.json()['id']}").headers
