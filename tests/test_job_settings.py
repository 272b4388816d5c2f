"""The settings a job carries are stored in Redis and shown in its description (RQ's logs and
tools): they hold no admin token, no secret key and no Redis password, and workers still
reach a Redis that asks for one."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from incidents.settings import Settings
from incidents.store.redis import without_password
from incidents.worker import jobs
from incidents.worker.jobs import job_settings
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import (
    admin_gateway,
    event,
    keys_holding,
    running_redis,
)

PASSWORD = "s3cret-redis-passw0rd"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{PASSWORD}@10.0.0.1:6380/2", "redis://10.0.0.1:6380/2"),
        (f"rediss://app:{PASSWORD}@cache.internal/0", "rediss://app@cache.internal/0"),
        (f"unix:///run/redis.sock?db=1&password={PASSWORD}", "unix:///run/redis.sock?db=1"),
        (f"redis://h:1/0?password={PASSWORD}&ssl_cert_reqs=none", "redis://h:1/0?ssl_cert_reqs=none"),
        (f"redis+sentinel://:{PASSWORD}@s1:26379,s2:26379/main/1", "redis+sentinel://s1:26379,s2:26379/main/1"),
        (f"redis://:{PASSWORD}@h:1?password={PASSWORD}", "redis://h:1"),
        (f"redis://h?password={PASSWORD}&db=3", "redis://h?db=3"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)  # fmt: skip
def test_a_job_s_settings_name_redis_without_its_password(url: str, shown: str) -> None:
    """The URL a job carries keeps the user, host, database and options, not the password."""
    assert without_password(url) == shown
    carried = job_settings(Settings(redis_url=url, admin_token="a" * 32))
    assert carried.redis_url == shown
    assert PASSWORD not in repr(carried) and "a" * 32 not in repr(carried)


def test_with_a_redis_password_no_job_holds_it_and_deliveries_still_go(
    settings: Settings, rx: Receiver, tmp_path: Path
) -> None:
    """Against a Redis that asks for a password, queued jobs hold it nowhere in Redis, and
    the workers (which know it) route and deliver."""
    with running_redis(tmp_path / "redis", appendonly=False) as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.config_set("requirepass", PASSWORD)
        url = server.url.replace("redis://", f"redis://:{PASSWORD}@")
        own = settings.replace(redis_url=url)
        with (
            admin_gateway(own) as client,
            redis.Redis.from_url(url) as connection,
        ):
            subscribe(client, rx, "/locked")
            (sent,) = publish(client, event(imincidentid="INC-PW"))
            workers = Workers(own)
            try:
                assert workers.scheduler.step()  # a job queued, not yet run
                assert keys_holding(connection, PASSWORD) == []
                workers.run_until(lambda: len(rx.at("/locked")) == 1)
            finally:
                workers.close()
            assert rx.at("/locked")[0].event["id"] == sent["id"]
            assert keys_holding(connection, PASSWORD) == []


def test_a_job_run_by_another_rq_worker_takes_the_password_from_its_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an incidents worker's context, a job reaches Redis with the URL of the
    environment when it names the same Redis, and with its own URL otherwise."""
    url = f"redis://:{PASSWORD}@10.0.0.1:6380/2"
    carried = job_settings(settings.replace(redis_url=url))
    monkeypatch.setenv("INCIDENTS_REDIS_URL", f" {url} ")
    assert jobs._context(carried).redis() == url
    monkeypatch.setenv("INCIDENTS_REDIS_URL", f"redis://:{PASSWORD}@10.0.0.9:6380/2")
    assert jobs._context(carried).redis() == "redis://10.0.0.1:6380/2"
