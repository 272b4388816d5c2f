"""A Redis at ``maxmemory`` (noeviction) refuses writes: the API answers 503 ``redis-full``
with Retry-After and stores nothing, ``/readyz`` and ``/metrics`` say Redis is full, worker
processes wait it out, and once there is room again every event answered 202 is stored and
delivered."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.requests import Request
from starlette.responses import Response

from incidents.api.toolkit.app_services import services
from incidents.app import create_app
from incidents.cli.preflight import seal_signing_secrets
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded import EmbeddedRedis
from incidents.store.secret_box import new_key
from tests.delivery_support import Receiver, publish, start_worker, subscribe
from tests.support import (
    STRUCTURED,
    TEST_TLS,
    SharedServer,
    admin_client,
    assert_problem,
    event,
    running_redis,
    wait_for,
)

BATCH = {"Content-Type": "application/cloudevents-batch+json"}
NOTE = "n" * 1000  # about the size of a real note


@dataclass
class Full:
    """The real app on a redis-server of its own, whose maxmemory the test sets."""

    server: EmbeddedRedis
    settings: Settings
    client: httpx.Client
    redis: redis.Redis

    def limit(self, maxmemory: int) -> None:
        self.redis.config_set("maxmemory", maxmemory)

    def sequence(self) -> int:
        return int(self.redis.get(keys.SEQUENCE) or 0)

    def gauge(self) -> str:
        response = self.client.get("/metrics")
        assert response.status_code == 200, response.text
        return next(
            line for line in response.text.splitlines() if line.startswith("incidents_redis_full ")
        )


@pytest.fixture
def full(settings: Settings, shared_server: SharedServer, tmp_path: Path) -> Iterator[Full]:
    with running_redis(tmp_path / "redis", appendonly=False) as server:
        own = settings.replace(redis_url=server.url, retry_schedule=(0.5,) * 8)
        with (
            shared_server.mounted(create_app(own)) as url,
            admin_client(url, timeout=15) as client,
            redis.Redis.from_url(server.url) as connection,
        ):
            yield Full(server, own, client, connection)


def notes(incident: str, count: int) -> list[dict[str, Any]]:
    return [
        event("im.incident.note", data={"text": NOTE}, imincidentid=incident) for _ in range(count)
    ]


def test_a_full_redis_is_a_503_redis_full_and_nothing_is_half_written(full: Full) -> None:
    """With Redis refusing writes, single and batch posts are 503 redis-full with Retry-After,
    no sequence is taken and no event kept; /readyz is 503 redis-full and the metrics say so;
    with room again the same events are accepted as new."""
    declared = full.client.post(
        "/v1/events", content=json.dumps(event(imincidentid="INC-FULL")), headers=STRUCTURED
    )
    assert declared.status_code == 202, declared.text
    before = full.sequence()
    assert full.gauge() == "incidents_redis_full 0"
    full.limit(1)  # every write that could add data is refused
    single, *batch = notes("INC-FULL", 4)
    refused = [
        full.client.post("/v1/events", content=json.dumps(single), headers=STRUCTURED),
        full.client.post("/v1/events", content=json.dumps(batch), headers=BATCH),
    ]
    for response in refused:
        body = assert_problem(response, 503, "redis-full")
        assert "maxmemory" in body["detail"] and "nothing was stored" in body["detail"]
        assert int(response.headers["Retry-After"]) > 0
    assert full.sequence() == before
    for e in (single, *batch):
        assert not full.redis.hexists(keys.event_ids(str(e["id"])), str(e["id"]))
    not_ready = assert_problem(full.client.get("/readyz"), 503, "redis-full")
    assert "not ready" in not_ready["detail"] and "full" in not_ready["detail"]
    assert full.gauge() == "incidents_redis_full 1"
    assert "incidents_redis_full_refusals_total 3" in full.client.get("/metrics").text
    full.limit(0)  # no limit: room again
    assert full.client.get("/readyz").status_code == 200
    assert full.gauge() == "incidents_redis_full 0"
    again = full.client.post("/v1/events", content=json.dumps([single, *batch]), headers=BATCH)
    assert again.status_code == 202, again.text
    assert not any(a.get("duplicate") for a in again.json()["accepted"])
    assert full.sequence() == before + 4


def test_a_subscription_registered_while_redis_is_full_is_refused_whole(full: Full) -> None:
    """A subscription registered while Redis is full is refused with 503 redis-full (its
    MULTI is aborted whole), and nothing of it is stored."""
    full.limit(1)
    refused = full.client.post("/v1/subscriptions", json={"sink": "https://example.com/hook"})
    assert_problem(refused, 503, "redis-full")
    assert full.redis.scard(keys.SUBSCRIPTIONS) == 0
    full.limit(0)
    assert full.client.get("/v1/subscriptions").json()["subscriptions"] == []


UNGUARDED = "incidents:test:unguarded"


async def unguarded_write(request: Request) -> Response:
    """A write made outside ``store.redis.guarded``, as a future endpoint might make one."""
    await services(request).redis.set(UNGUARDED, b"x" * 4096)
    return Response(status_code=204)


async def wrong_type(request: Request) -> Response:
    """A read Redis refuses for another reason (WRONGTYPE: the key holds a string)."""
    await services(request).redis.hget(UNGUARDED, "field")
    return Response(status_code=204)


def test_a_write_outside_any_guard_is_still_a_503_redis_full(
    settings: Settings, shared_server: SharedServer, tmp_path: Path
) -> None:
    """The app turns a write refused for want of memory into 503 redis-full wherever it was
    made; any other Redis error reply stays an internal error (500)."""
    with running_redis(tmp_path / "redis", appendonly=False) as server:
        app = create_app(settings.replace(redis_url=server.url))
        app.add_route("/test/unguarded", unguarded_write, methods=["POST"])
        app.add_route("/test/wrong-type", wrong_type, methods=["POST"])
        with (
            shared_server.mounted(app) as url,
            httpx.Client(verify=TEST_TLS, base_url=url, timeout=15) as client,
            redis.Redis.from_url(server.url) as connection,
        ):
            assert client.post("/test/unguarded").status_code == 204
            connection.config_set("maxmemory", 1)
            body = assert_problem(client.post("/test/unguarded"), 503, "redis-full")
            assert "POST /test/unguarded" in body["detail"]
            assert_problem(client.post("/test/wrong-type"), 500, "internal")


def delivered(rx: Receiver, path: str) -> set[str]:
    """Event ids that arrived with a signature the receiver verified."""
    found = set()
    for r in rx.at(path):
        assert r.verified, r.headers
        found.add(str(r.event["id"]))
    return found


@pytest.mark.slow
def test_fill_redis_until_503_raise_the_limit_and_nothing_accepted_is_lost(
    full: Full, rx: Receiver, tmp_path: Path
) -> None:
    """Posting 1 KB notes into a Redis of a few MB ends in 503 redis-full while a worker
    process delivers; once maxmemory is raised the worker (still running) delivers every
    event that was answered 202, the refused ones were never stored, and new events flow."""
    subscribe(full.client, rx, "/full")
    incidents = [f"INC-{n}" for n in range(4)]
    for incident in incidents:
        response = full.client.post(
            "/v1/events", content=json.dumps(event(imincidentid=incident)), headers=STRUCTURED
        )
        assert response.status_code == 202, response.text
    log = tmp_path / "worker.log"
    worker = start_worker(full.settings, log)
    try:
        used = int(full.redis.info("memory")["used_memory"])
        full.limit(used + 3 * 1024 * 1024)
        accepted: set[str] = set()
        refused: list[dict[str, Any]] = []

        def post_notes(round_: int) -> int:
            batch = notes(incidents[round_ % len(incidents)], 10)
            response = full.client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
            if response.status_code == 503:
                assert_problem(response, 503, "redis-full")
                refused.extend(batch)
            else:
                assert response.status_code == 202, response.text
                accepted.update(str(e["id"]) for e in batch)
            return response.status_code

        round_ = 0
        while post_notes(round_) == 202 and round_ < 5000:
            round_ += 1
        assert refused, "Redis never filled up"
        assert len(accepted) >= 200
        wait_for(lambda: "Redis is full" in log.read_text(), 60, what="the worker waiting")

        def says_full() -> httpx.Response | None:
            # Memory hovers at the limit (client buffers, expiring keys): keep it topped up
            # until the probe is refused too.
            ready = full.client.get("/readyz")
            if ready.status_code == 503:
                return ready
            post_notes(0)
            return None

        assert_problem(wait_for(says_full, 60, what="/readyz saying so"), 503, "redis-full")
        sequence = full.sequence()
        assert sequence == len(accepted) + len(incidents)  # no number taken by a refusal
        full.limit(0)
        after = notes(incidents[0], 10)
        response = full.client.post("/v1/events", content=json.dumps(after), headers=BATCH)
        assert response.status_code == 202, response.text
        accepted |= {str(e["id"]) for e in after}
        wait_for(
            lambda: accepted <= delivered(rx, "/full") or worker.poll() is not None,
            180,
            what="every accepted event delivered",
        )
        assert worker.poll() is None, log.read_text()
        assert accepted <= delivered(rx, "/full")
        assert not {str(e["id"]) for e in refused} & delivered(rx, "/full")
        for e in refused:
            assert full.client.get(f"/v1/events/{e['id']}").status_code == 404
        print(f"\n{len(accepted)} events accepted before Redis filled up, all delivered")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0, log.read_text()


def test_start_up_sealing_while_redis_is_full_warns_and_seals_later(
    full: Full, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key set while Redis is full: the start-up sealing of plain signing secrets warns
    that Redis is full and lets the command start, and seals them at the next start."""
    sub = full.client.post("/v1/subscriptions", json={"sink": "https://example.com/hook"})
    assert sub.status_code == 201, sub.text
    keyed = full.settings.replace(secret_key=new_key())
    full.limit(1)
    seal_signing_secrets(keyed)
    err = capsys.readouterr().err
    assert "warning" in err and "Redis is full" in err and "not sealed" in err, err
    stored = full.redis.hget(keys.subscription(sub.json()["id"]), "secrets")
    assert isinstance(stored, bytes) and b"sealed:" not in stored
    full.limit(0)
    seal_signing_secrets(keyed)
    assert "sealed the signing secrets of 1 subscription(s)" in capsys.readouterr().err


def delivery_records(connection: redis.Redis) -> int:
    buckets = connection.scan_iter(match=keys.PREFIX + "deliveries:*", count=1000)
    return sum(int(connection.hlen(bucket)) for bucket in buckets)


def test_a_replay_cut_short_by_a_full_redis_says_what_it_queued(full: Full, rx: Receiver) -> None:
    """A replay that fills Redis part of the way is a 503 redis-full that says how many
    deliveries it queued and up to which event, not that nothing was stored."""
    sub = subscribe(full.client, rx, "/replayed")
    incidents = [f"INC-R{n}" for n in range(3)]
    for incident in incidents:
        publish(full.client, event(imincidentid=incident))
    for n in range(1500 // 100):
        publish(full.client, *notes(incidents[n % 3], 100))
    replay = f"/v1/subscriptions/{sub['id']}/replay"
    before, used = delivery_records(full.redis), int(full.redis.info("memory")["used_memory"])
    whole = full.client.post(replay, json={"since": "2020-01-01T00:00:00Z"})
    assert whole.status_code == 202, whole.text
    assert whole.json()["queued"] == 1503
    cost = int(full.redis.info("memory")["used_memory"]) - used
    records = delivery_records(full.redis)
    assert records - before == 1503
    full.limit(int(full.redis.info("memory")["used_memory"]) + cost * 2 // 5)
    cut = full.client.post(replay, json={"since": "2020-01-01T00:00:00Z"})
    body = assert_problem(cut, 503, "redis-full")
    queued = delivery_records(full.redis) - records
    assert 0 < queued < 1503
    assert "nothing was stored" not in body["detail"]
    assert f"queued {queued} deliveries" in body["detail"], body["detail"]
    full.limit(0)
