"""INCIDENTS_QUEUE_REDIS_URL: RQ on a Redis of its own, the data on INCIDENTS_REDIS_URL. Events
are delivered end to end across the two, nothing of RQ's lands in the data Redis, and a queue
Redis that restarts without its data loses no accepted event: the workers' jobs are rebuilt
from the data (the outbox, the due lanes)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq import Worker

from incidents.settings import Settings, SettingsError
from incidents.store.embedded import EmbeddedRedis
from incidents.worker.jobs import job_settings
from tests.delivery_support import Receiver, Workers, publish, start_worker, subscribe
from tests.support import event, running_redis, wait_for
from tests.test_metrics import sample
from tests.test_worker_resilience import delivered, incident_events

CLUSTER = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"


def test_without_a_queue_url_rq_shares_the_data_redis() -> None:
    """Unset, the queue Redis is the data Redis, as it always was."""
    found = Settings.from_env({"INCIDENTS_REDIS_URL": "redis://data:6379/0"})
    assert found.queue_redis_url is None
    assert found.queue_url == "redis://data:6379/0"


def test_a_queue_url_takes_rq_elsewhere() -> None:
    """Set, RQ's Redis is the one it names, plain or found through Sentinel."""
    for url in ("redis://queue:6379/2", "redis+sentinel://s1:26379/rq"):
        found = Settings.from_env(
            {"INCIDENTS_REDIS_URL": "redis://data:6379/0", "INCIDENTS_QUEUE_REDIS_URL": url}
        )
        assert found.queue_url == url


def test_a_cluster_needs_a_queue_url() -> None:
    """Data on a Redis Cluster without INCIDENTS_QUEUE_REDIS_URL stops start-up, saying so."""
    with pytest.raises(SettingsError, match="INCIDENTS_QUEUE_REDIS_URL is not set"):
        Settings.from_env({"INCIDENTS_REDIS_URL": CLUSTER})
    found = Settings.from_env(
        {"INCIDENTS_REDIS_URL": CLUSTER, "INCIDENTS_QUEUE_REDIS_URL": "redis://queue:6379"}
    )
    assert found.redis_url == CLUSTER and found.queue_url == "redis://queue:6379"


def test_rq_cannot_run_on_a_cluster() -> None:
    """A cluster URL for the queue is refused, naming the setting and why."""
    with pytest.raises(SettingsError, match="INCIDENTS_QUEUE_REDIS_URL: RQ does not run"):
        Settings.from_env({"INCIDENTS_QUEUE_REDIS_URL": CLUSTER})
    with pytest.raises(SettingsError, match=r"INCIDENTS_QUEUE_REDIS_URL: .*'queue:x'"):
        Settings.from_env({"INCIDENTS_QUEUE_REDIS_URL": "redis+sentinel://queue:x/rq"})


def test_jobs_carry_no_queue_password() -> None:
    """The settings stored with each job leave out the queue Redis's password too."""
    found = Settings(redis_url="redis://data/0", queue_redis_url="redis://:hunter2@queue:6379/0")
    assert job_settings(found).queue_redis_url == "redis://queue:6379/0"


@pytest.fixture
def queue_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A second throwaway Redis, for RQ alone; restarted by a test, it starts empty."""
    with running_redis(tmp_path / "queue", appendonly=False) as server:
        yield server


@pytest.fixture
def settings(settings: Settings, queue_redis: EmbeddedRedis) -> Settings:
    """The test settings with RQ on the queue Redis (the gateway and workers use these)."""
    return settings.replace(queue_redis_url=queue_redis.url)


def _rq_keys(client: redis.Redis) -> list[bytes]:
    return [key for key in client.scan_iter(match="rq:*", count=1000)]


def test_events_reach_the_sink_with_rq_on_its_own_redis(
    client: httpx.Client, workers: Workers, rx: Receiver, queue_redis: EmbeddedRedis
) -> None:
    """Signed events go from gateway to sink with RQ on the queue Redis, and not one key of
    RQ's is written to the data Redis."""
    subscribe(client, rx, "/split")
    accepted = publish(client, *incident_events("INC-S", 3))
    ids = {a["id"] for a in accepted}
    workers.run_until(lambda: ids <= delivered(rx, "/split"))
    assert _rq_keys(workers.queue)  # RQ worked there
    assert _rq_keys(workers.connection) == []


def test_jobs_lost_with_the_queue_redis_are_rebuilt_from_the_data(
    client: httpx.Client, workers: Workers, rx: Receiver, queue_redis: EmbeddedRedis
) -> None:
    """The queue Redis restarts empty with jobs queued for an unrouted event and a retry
    due: the pump enqueues them again from the outbox and the due lanes, and both arrive."""
    subscribe(client, rx, "/split")
    first = publish(client, event("im.incident.declare", imincidentid="INC-R"))[0]["id"]
    rx.scripts["/split"] = [(500, {})]  # the first attempt fails: a retry is due later
    workers.run_until(lambda: len(rx.at("/split")) == 1)
    second = publish(client, event("im.incident.declare", imincidentid="INC-N"))[0]["id"]
    assert workers.scheduler.step()  # jobs for the new event and the retry wait in RQ
    assert workers.queue.llen("rq:queue:incidents-route") + workers.queue.llen(
        "rq:queue:incidents-deliver"
    )
    queue_redis.kill()
    queue_redis.start()
    assert _rq_keys(workers.queue) == []  # every job, and the queues, lost
    workers.run_until(lambda: {first, second} <= delivered(rx, "/split"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_process_rides_out_the_queue_redis_restarting_empty(
    client: httpx.Client,
    settings: Settings,
    rx: Receiver,
    queue_redis: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    """With the queue Redis killed and started again without its data, every event answered
    202 (before, while it is down, after) is delivered by a real worker process, which
    registers itself again and is counted."""
    subscribe(client, rx, "/split")
    # A worker registers again at its first heartbeat after the job it runs: jobs of 3 s, not
    # 60, so that comes within seconds (and the jobs after the restart go to the new queue).
    worker = start_worker(settings, tmp_path / "worker.log", job_seconds=3.0)
    log = tmp_path / "worker.log"
    try:
        with redis.Redis.from_url(queue_redis.url) as queue:
            wait_for(lambda: Worker.count(connection=queue) == 1, 60, what="worker registered")
        acknowledged = {a["id"] for a in publish(client, *incident_events("INC-A", 5))}
        wait_for(lambda: acknowledged <= delivered(rx, "/split"), 60, what="first delivered")
        queue_redis.kill()
        down = publish(client, *incident_events("INC-D", 5))  # the API needs no queue Redis
        assert len(down) == 10
        acknowledged |= {a["id"] for a in down}
        queue_redis.start()
        acknowledged |= {a["id"] for a in publish(client, *incident_events("INC-B", 5))}
        wait_for(
            lambda: acknowledged <= delivered(rx, "/split") or worker.poll() is not None,
            120,
            what="every acknowledged event delivered",
        )
        assert worker.poll() is None, log.read_text(errors="replace")
        assert acknowledged <= delivered(rx, "/split")
        wait_for(
            lambda: sample(client.get("/metrics").text, "incidents_workers") == 1,
            120,
            what="the worker counted again",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0, log.read_text(errors="replace")


def test_the_workers_gauge_is_left_out_while_the_queue_redis_is_down(
    client: httpx.Client, queue_redis: EmbeddedRedis
) -> None:
    """The data Redis answering and RQ's not: the other gauges stay, incidents_workers goes."""
    assert sample(client.get("/metrics").text, "incidents_workers") == 0
    queue_redis.kill()
    text = client.get("/metrics").text
    assert "incidents_workers" not in text
    assert sample(text, "incidents_redis_up") == 1
    assert sample(text, "incidents_subscriptions") == 0
