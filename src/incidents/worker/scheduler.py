"""Keeps the queues fed: a routing job (in a running worker, a deliver job, which routes
too) when the outbox has entries nobody is routing, a deliver job when a lane is due (new
work, a retry whose time has come, or a lease left by a dead worker).

This is the job scheduler (``JobScheduler``, the worker's "pump" in its logs): delayed
retries are times in each partition's ``incidents:lanes:due``, so they fire in every worker,
however started, without RQ's scheduler. Each worker process runs one; several at once only
cost a few extra, quickly finished jobs.

The scheduler does not poll. While its worker runs a deliver job, that job watches for work
itself and the scheduler only waits for it to end. Otherwise it blocks reading the outboxes
and the wake stream (an entry each time a lane becomes due), and wakes at the earliest time
a lane or lease falls due, so a new event or a due retry starts a job at once. Every
partition's outbox, routing lease and lanes are checked; on a Redis Cluster, where one read
cannot block on streams of several slots, it blocks on the wake stream alone and looks at the
outboxes at least every ``CLUSTER_BLOCK_MS``.

What there is to do is read from the data Redis, and the jobs go to RQ's (the queue Redis,
``INCIDENTS_QUEUE_REDIS_URL``, when it is not the same): a queue Redis that lost its jobs gets
new ones at the next step, since the work they stood for is still in the data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue

from incidents.settings import Settings
from incidents.store import keys
from incidents.store.redis import is_full
from incidents.store.scripts import load_script
from incidents.worker.jobs import (
    DELIVER_QUEUE,
    ROUTE_QUEUE,
    deliver_job,
    deliver_timeout,
    job_settings,
    route_job,
)

log = logging.getLogger("incidents.delivery")
BLOCK_MS = 500  # the longest one blocking read waits: also how soon a stop is noticed
MIN_WAIT = 0.05  # seconds: the least wait when work is due but a job for it already waits
CLUSTER_BLOCK_MS = 200  # on a cluster, how often the outboxes are looked at while idle


class JobScheduler:
    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        clock: Callable[[], float],
        queue: redis.Redis | None = None,
    ) -> None:
        """``connection``: the data Redis; ``queue``: RQ's, when it has one of its own."""
        self.connection = connection
        self.queue = queue if queue is not None else connection
        self.clock = clock  # when lanes and leases fall due: the dispatcher's clock
        self.settings = job_settings(settings)
        self.route = Queue(ROUTE_QUEUE, connection=self.queue)
        self.deliver = Queue(DELIVER_QUEUE, connection=self.queue)
        self._backlog = connection.register_script(load_script("outbox"))
        self.layout = settings.layout
        # A cluster client cannot block on streams of several slots in one read, and its
        # pipelines do not load the scripts queued on them.
        self._cluster = isinstance(connection, redis.RedisCluster)
        self._script_loaded = False
        self.next_due: float | None = None  # the earliest due lane or lease end, at the last step

    def step(self, routing_in_deliver: bool = False) -> bool:
        """Enqueue what is needed now; True if anything was enqueued. A backlog in the outbox
        gets a routing job, or with ``routing_in_deliver`` a deliver job (which routes too:
        one job takes a new event from outbox to sink)."""
        now = self.clock()
        pipe = self._pipeline()
        for space in self.layout:
            self._backlog(keys=[space.OUTBOX], args=[keys.ROUTER_GROUP, 0], client=pipe)
            pipe.exists(space.ROUTE_LOCK)
            pipe.zrange(space.LANES_DUE, 0, 0, withscores=True)
            pipe.zrange(space.LANES_LEASED, 0, 0, withscores=True)
        jobs = pipe if self.queue is self.connection else self.queue.pipeline(transaction=False)
        jobs.llen(self.deliver.key)
        jobs.llen(self.route.key)
        replies = self._execute(pipe) + (jobs.execute() if jobs is not pipe else [])
        *spaces, deliver_waiting, route_waiting = replies
        unrouted = False
        firsts: list[float] = []
        for i in range(0, len(spaces), 4):
            backlog, routing, due, leased = spaces[i : i + 4]
            firsts += [float(found[0][1]) for found in (due, leased) if found]
            # a partition with entries to route that no router holds
            unrouted = unrouted or (bool(backlog) and not routing)
        self.next_due = min(firsts) if firsts else None
        enqueued = False
        if unrouted and not routing_in_deliver and not route_waiting:
            self.route.enqueue(
                route_job, self.settings, job_timeout=120, result_ttl=0, failure_ttl=86400
            )
            enqueued = True
        if (
            (unrouted and routing_in_deliver) or (firsts and min(firsts) <= now)
        ) and not deliver_waiting:
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
        pipe = self._pipeline()
        for space in self.layout:
            self._backlog(keys=[space.OUTBOX], args=[keys.ROUTER_GROUP, 0], client=pipe)
            pipe.zcard(space.LANES_DUE)
            pipe.zcard(space.LANES_LEASED)
        return any(self._execute(pipe))

    def _pipeline(self) -> redis.client.Pipeline:
        """A pipeline of the data Redis; on a cluster, with the outbox script loaded on every
        primary first while it may be missing (at first, and after a NOSCRIPT)."""
        if self._cluster and not self._script_loaded:
            self.connection.script_load(self._backlog.script)
            self._script_loaded = True
        return self.connection.pipeline(transaction=False)

    def _execute(self, pipe: redis.client.Pipeline) -> list[Any]:
        try:
            return pipe.execute()
        except redis.exceptions.NoScriptError:
            self._script_loaded = False  # a node lost it (a replica promoted): load it again
            raise

    def run(self, stop: threading.Event, idle: threading.Event | None = None) -> None:
        """Feed the queue until ``stop``; ``idle``: set while this worker runs no deliver job
        (while it runs one, the job watches for work and the scheduler waits)."""
        lost = False
        positions: dict[str, bytes] | None = None
        while not stop.is_set():
            if idle is not None and not idle.is_set():
                positions = None  # read afresh once the job ends: the job saw these entries
                idle.wait(BLOCK_MS / 1000)
                continue
            try:
                if positions is None:
                    positions = self._positions()
                enqueued = self.step(routing_in_deliver=True)
                self._wait(positions, enqueued)
            except redis.exceptions.RedisError as exc:
                if not lost:
                    trouble = "finds Redis full" if is_full(exc) else "cannot reach Redis"
                    log.warning("the pump %s (%s); retrying every second", trouble, exc)
                lost, positions = True, None
                stop.wait(1.0)
                continue
            if lost:
                log.warning("the pump reaches Redis again")
                lost = False

    def _streams(self) -> list[str]:
        """What the scheduler blocks reading: every outbox and the wake stream (on a cluster,
        the wake stream alone)."""
        outboxes = [] if self._cluster else [space.OUTBOX for space in self.layout]
        return [*outboxes, keys.LANES_WAKE]

    def _positions(self) -> dict[str, bytes]:
        """Where the outboxes and the wake stream end now: a blocking read from there misses
        nothing added since."""
        streams = self._streams()
        pipe = self.connection.pipeline(transaction=False)
        for stream in streams:
            pipe.xrevrange(stream, count=1)
        found: list[Any] = pipe.execute()
        return {
            stream: newest[0][0] if newest else b"0-0"
            for stream, newest in zip(streams, found, strict=True)
        }

    def _wait(self, positions: dict[str, bytes], enqueued: bool) -> None:
        """Block until a stream gets an entry or the next lane or lease falls due (at
        most ``BLOCK_MS``); ``positions`` moves past what was read."""
        timeout = (CLUSTER_BLOCK_MS if self._cluster else BLOCK_MS) / 1000
        if self.next_due is not None:
            timeout = min(timeout, max(self.next_due - self.clock(), MIN_WAIT))
        if enqueued:
            timeout = MIN_WAIT  # the job may not be taken (every worker busy): look again soon
        streams: dict[Any, Any] = dict(positions)
        reply: Any = self.connection.xread(streams, count=1000, block=max(1, int(timeout * 1000)))
        for stream, entries in reply or []:
            if entries:
                name = stream.decode() if isinstance(stream, bytes) else stream
                positions[name] = entries[-1][0]
