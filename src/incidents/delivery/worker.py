"""The worker process: an RQ worker (with its scheduler, so delayed retries run)."""

from __future__ import annotations

from rq import Queue, Worker

from incidents.settings import Settings
from incidents.store.redis import connect

QUEUES = ("incidents-route", "incidents-deliver")


def run_worker(settings: Settings, burst: bool = False) -> int:
    assert settings.redis_url is not None
    connection = connect(settings.redis_url)
    queues = [Queue(name, connection=connection) for name in QUEUES]
    worker = Worker(queues, connection=connection)
    worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    return 0
