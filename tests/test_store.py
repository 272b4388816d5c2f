"""Durable acceptance: what happens to accepted events when Redis goes away and comes back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.settings import Settings
from incidents.store.embedded import EmbeddedRedis
from tests.support import admin_client, event, running_redis, serve_in_thread

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private redis-server with AOF, which a test may stop, kill and restart."""
    with running_redis(tmp_path / "redis", appendonly=True) as server:
        yield server


@pytest.fixture
def own_client(own_redis: EmbeddedRedis, settings: Settings) -> Iterator[httpx.Client]:
    app = create_app(settings.replace(redis_url=own_redis.url))
    with (
        serve_in_thread(app) as url,
        admin_client(url, timeout=20) as c,
    ):
        yield c


def post(client: httpx.Client, ev: dict[str, object]) -> httpx.Response:
    return client.post("/v1/events", content=json.dumps(ev), headers=STRUCTURED)


def test_redis_down_gives_503_with_retry_after_then_recovers(
    own_redis: EmbeddedRedis, own_client: httpx.Client
) -> None:
    """With Redis gone the gateway answers 503 + Retry-After, and works again once it is back."""
    before = event()
    assert post(own_client, before).status_code == 202
    own_redis.stop()
    during = event()
    r = post(own_client, during)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:incidents:problem:store-unavailable"
    assert int(r.headers["retry-after"]) > 0
    assert own_client.get("/readyz").status_code == 503
    assert own_client.get("/healthz").status_code == 200
    own_redis.start()
    assert own_client.get("/readyz").status_code == 200
    again = post(own_client, during)
    assert again.status_code == 202, again.text
    # The event refused during the outage was not half-written: it is stored exactly once now.
    assert own_client.get(f"/v1/events/{during['id']}").status_code == 200
    assert own_client.get(f"/v1/events/{before['id']}").status_code == 200


def test_accepted_events_survive_a_redis_restart_with_aof(
    own_redis: EmbeddedRedis, own_client: httpx.Client
) -> None:
    """Events acknowledged with 202 are still there after redis-server restarts from its AOF."""
    sent = [event() for _ in range(20)]
    for ev in sent:
        assert post(own_client, ev).status_code == 202
    own_redis.stop()
    own_redis.start()
    check = redis.Redis.from_url(own_redis.url)
    assert check.xlen("incidents:outbox") == len(sent)
    check.close()
    for ev in sent:
        r = own_client.get(f"/v1/events/{ev['id']}")
        assert r.status_code == 200, r.text
    assert post(own_client, sent[0]).status_code == 200
