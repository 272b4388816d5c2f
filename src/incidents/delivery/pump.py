"""Keeps the queues fed: a routing job when the outbox has entries, a delivery job when a
lane is due (new work, a retry whose time has come, or a lease left by a dead worker).

This is the delivery scheduler: delayed retries are times in ``incidents:lanes:due``, so
they fire in every worker, however started, without RQ's scheduler. Each worker process
runs a pump; several pumps at once only cost a few extra, quickly finished jobs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from rq import Queue

from incidents.delivery.jobs import (
    DELIVER_QUEUE,
    ROUTE_QUEUE,
    deliver_job,
    deliver_timeout,
    job_settings,
    route_job,
)
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.keys import OUTBOX
from incidents.store.scripts import load_script

log = logging.getLogger("incidents.delivery")


class Pump:
    def __init__(
        self, connection: redis.Redis, settings: Settings, clock: Callable[[], float]
    ) -> None:
        self.connection = connection
        self.clock = clock  # when lanes and leases fall due: the dispatcher's clock
        self.settings = job_settings(settings)
        self.route = Queue(ROUTE_QUEUE, connection=connection)
        self.deliver = Queue(DELIVER_QUEUE, connection=connection)
        self._backlog = connection.register_script(load_script("outbox"))

    def step(self) -> bool:
        """Enqueue what is needed now; True if anything was enqueued."""
        now = self.clock()
        pipe = self.connection.pipeline(transaction=False)
        self._backlog(keys=[OUTBOX], args=[keys.ROUTER_GROUP, 0], client=pipe)
        pipe.exists(keys.ROUTE_LOCK)
        pipe.llen(self.route.key)
        pipe.zrangebyscore(keys.LANES_DUE, "-inf", now, start=0, num=1)
        pipe.zrangebyscore(keys.LANES_LEASED, "-inf", now, start=0, num=1)
        pipe.llen(self.deliver.key)
        backlog, routing, route_waiting, due, expired, deliver_waiting = pipe.execute()
        enqueued = False
        if backlog and not routing and not route_waiting:
            self.route.enqueue(
                route_job, self.settings, job_timeout=120, result_ttl=0, failure_ttl=86400
            )
            enqueued = True
        if (due or expired) and not deliver_waiting:
            self.deliver.enqueue(
                deliver_job,
                self.settings,
                job_timeout=deliver_timeout(self.settings),
                result_ttl=0,
                failure_ttl=86400,
            )
            enqueued = True
        return enqueued

    def pending(self) -> bool:
        """Whether anything is left to route or deliver (now or later)."""
        pipe = self.connection.pipeline(transaction=False)
        self._backlog(keys=[OUTBOX], args=[keys.ROUTER_GROUP, 0], client=pipe)
        pipe.zcard(keys.LANES_DUE)
        pipe.zcard(keys.LANES_LEASED)
        return any(pipe.execute())

    def run(self, stop: threading.Event, interval: float = 0.01) -> None:
        lost = False
        while not stop.is_set():
            try:
                self.step()
            except redis.exceptions.RedisError as exc:
                if not lost:
                    log.warning("the pump cannot reach Redis (%s); retrying every second", exc)
                lost = True
                stop.wait(1.0)
                continue
            if lost:
                log.warning("the pump reaches Redis again")
                lost = False
            stop.wait(interval)
