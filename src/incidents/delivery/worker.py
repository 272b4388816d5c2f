"""The worker process: an RQ worker over the routing and delivery queues, plus the pump
that enqueues their jobs (and so fires delayed retries; RQ's scheduler is not needed)."""

from __future__ import annotations

import threading
from typing import Any

import redis
from rq import Queue, SimpleWorker

from incidents.delivery.jobs import DELIVER_QUEUE, ROUTE_QUEUE, WorkerContext, current_context
from incidents.delivery.pump import Pump
from incidents.heap import freeze_startup_objects
from incidents.settings import Settings
from incidents.store.redis import connect

QUEUES = (ROUTE_QUEUE, DELIVER_QUEUE)


class DeliveryWorker(SimpleWorker):
    """Runs jobs in this process (no fork per job), handing each the shared context."""

    def __init__(self, *args: Any, context: WorkerContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context

    def execute_job(self, job: Any, queue: Any) -> None:
        token = current_context.set(self.context)
        try:
            super().execute_job(job, queue)
        finally:
            current_context.reset(token)


def make_worker(
    settings: Settings, connection: redis.Redis, context: WorkerContext | None = None
) -> DeliveryWorker:
    queues = [Queue(name, connection=connection) for name in QUEUES]
    return DeliveryWorker(
        queues, connection=connection, context=context or WorkerContext.build(settings)
    )


def run_worker(settings: Settings, burst: bool = False, server_process: bool = False) -> int:
    """Work the queues; ``server_process``: this process only works, so its start-up objects
    are frozen out of garbage collection before the first job."""
    assert settings.redis_url is not None
    connection = connect(settings.redis_url)
    worker = make_worker(settings, connection)
    pump = Pump(connection, settings)
    if server_process:
        freeze_startup_objects()
    if burst:
        # Work until nothing is due now; retries scheduled for later are left for later.
        while pump.step():
            worker.work(burst=True, logging_level="WARNING")
        return 0
    stop = threading.Event()
    thread = threading.Thread(target=pump.run, args=(stop,), name="incidents-pump", daemon=True)
    thread.start()
    try:
        worker.work(logging_level="WARNING")
    finally:
        stop.set()
        thread.join(5)
    return 0
