"""The worker process: an RQ worker over the routing and delivery queues, plus the job
scheduler that enqueues their jobs (and so fires delayed retries; RQ's scheduler is not needed).

A worker rides out a Redis outage. RQ's own loop retries only its blocking dequeue; every
other call it makes to Redis (suspension check, registry maintenance, heartbeats, the job's
start and end bookkeeping) would end the process. Here each of those backs off and carries on
once Redis answers again, and a job whose bookkeeping the outage cut short is settled then:
failed if it had started (its delivery lanes' leases run out and are worked again, so nothing
is lost), put back at the head of its queue if it had not.

A worker rides out a full Redis (at ``maxmemory``, refusing writes) the same way: it waits,
checking with a write that changes nothing, until Redis takes writes again.

RQ runs on ``INCIDENTS_QUEUE_REDIS_URL`` when that is set (else on the data Redis): its jobs,
the workers' registrations, the job bookkeeping. None of that is the only record of anything.
A job is "work the lanes for a while" or "route the outbox"; what there is to do is in the
data Redis (the outbox, the due and leased lanes), and the pump enqueues a job whenever there
is work and no job waits for it. So a queue Redis restarted without its data costs the jobs
it held and nothing more: the pump enqueues new ones, each worker registers itself again at
its next heartbeat, and every accepted event is delivered.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, TypeVar

import redis
from redis.client import PubSub
from rq import Queue, SimpleWorker, worker_registration
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import InvalidJobOperation, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.worker import WorkerStatus

from incidents.gc_freeze import freeze_startup_objects
from incidents.settings import Settings
from incidents.store.redis import FULL, UNAVAILABLE, connect
from incidents.store.redis_memory import refuses_writes
from incidents.worker.jobs import DELIVER_QUEUE, ROUTE_QUEUE, WorkerContext, current_context
from incidents.worker.scheduler import JobScheduler

QUEUES = (ROUTE_QUEUE, DELIVER_QUEUE)
COMMAND_POLL = 1.0  # seconds the command listener waits per read: bounds how long a stop waits
FIRST_BACKOFF = 0.5  # seconds before the first reconnection attempt; doubles each time
MAX_BACKOFF = 5.0
# What a worker waits out: Redis out of reach, or full.
RIDE_OUT: tuple[type[BaseException], ...] = UNAVAILABLE + FULL

T = TypeVar("T")
log = logging.getLogger("incidents.delivery")


class CommandListener(threading.Thread):
    """Reads a worker's RQ command channel (shutdown, kill-horse, stop-job) on a thread.

    RQ's own listener is redis-py's ``run_in_thread`` with a 60 s poll, and RQ stops it only
    after sending the UNSUBSCRIBE. Since redis-py 8.2 that stop waits for the thread; a
    listener that read the UNSUBSCRIBE reply before it was told to stop has gone back to
    waiting up to 60 s for a new subscription, so the stop waited with it: at every burst run
    and every shutdown, whenever the thread won that race (often, on a loaded machine). This
    listener is told to stop before the UNSUBSCRIBE goes out, so the reply ends its read, and
    no read of its waits longer than ``COMMAND_POLL``.
    """

    def __init__(self, pubsub: PubSub, on_error: Callable[[Exception, PubSub, Any], None]) -> None:
        super().__init__(name="incidents-rq-commands", daemon=True)
        self.pubsub = pubsub
        self.on_error = on_error
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.pubsub.get_message(ignore_subscribe_messages=True, timeout=COMMAND_POLL)
            except Exception as exc:
                if self.stopping.is_set():
                    return  # the connection was closed under a read that was ending anyway
                self.on_error(exc, self.pubsub, self)

    def stop(self) -> None:
        self.stopping.set()


class DeliveryWorker(SimpleWorker):
    """Runs jobs in this process (no fork per job), handing each the shared context."""

    # RQ's own retry of a failed dequeue: the same cap as ours.
    max_connection_wait_time = MAX_BACKOFF
    pubsub_thread: CommandListener | None  # type: ignore[assignment]  # RQ declares it None only

    def __init__(self, *args: Any, context: WorkerContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context
        self.running: Execution | None = None

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # A running deliver job stops claiming lanes and finishes those in flight, so a warm
        # shutdown takes at most one delivery timeout.
        self.context.stopping.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # RQ leaves it unannotated

    def execute_job(self, job: Job, queue: Queue) -> None:
        token = current_context.set(self.context)
        try:
            super().execute_job(job, queue)
        except RIDE_OUT as exc:
            self.settle_interrupted(job, queue, exc)
        finally:
            self.running = None
            current_context.reset(token)

    def prepare_execution(self, job: Job) -> Execution:
        self.running = super().prepare_execution(job)
        return self.running

    def settle_interrupted(self, job: Job, queue: Queue, exc: BaseException) -> None:
        """Once Redis is back, record the end of a job whose bookkeeping the outage cut off."""
        self.await_redis(exc)
        trouble = "full" if isinstance(exc, FULL) else "unreachable"
        reason = f"Redis became {trouble} while the job ran:\n" + "".join(
            traceback.format_exception(exc)
        )

        def settle() -> None:
            try:
                status = job.get_status(refresh=True)
            except InvalidJobOperation:
                return  # gone: it finished and its result was not kept
            if status == JobStatus.STARTED:
                self.handle_job_failure(
                    job, queue, queue.started_job_registry, reason, execution=self.running
                )
            elif status == JobStatus.QUEUED:
                queue.push_job_id(job.id, at_front=True)

        self.riding_out(settle)
        self.riding_out(lambda: self.set_state(WorkerStatus.IDLE))

    def await_redis(self, exc: BaseException) -> None:
        """Wait until Redis answers; raise ``StopRequested`` if a stop is asked for meanwhile
        (a warm shutdown stays prompt during an outage)."""
        if not wait_for_redis(
            self.connection, self.log, f"Worker {self.name}", exc, lambda: self._stop_requested
        ):
            raise StopRequested from exc

    def riding_out(self, action: Callable[[], T]) -> T:
        """Run ``action``; when Redis is unreachable or full, wait until it is back (taking
        writes) and run it again."""
        while True:
            try:
                return action()
            except RIDE_OUT as exc:
                self.await_redis(exc)

    # The Redis calls of RQ's work loop outside its dequeue retry, each made to ride out an
    # outage. Each is safe to repeat: a check, a cleanup, a timestamp.
    def bootstrap(
        self,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        self.riding_out(
            lambda: super(DeliveryWorker, self).bootstrap(logging_level, date_format, log_format)
        )

    def check_for_suspension(self, burst: bool) -> None:
        self.riding_out(lambda: super(DeliveryWorker, self).check_for_suspension(burst))

    def run_maintenance_tasks(self) -> None:
        self.riding_out(
            lambda: super(DeliveryWorker, self).run_maintenance_tasks()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated
        )

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # Before a job is popped (the state write) and after (the heartbeat, which rides out
        # on its own): a repeat never drops a popped job.
        return self.riding_out(
            lambda: super(DeliveryWorker, self).dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        )

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # queued on a pipeline: nothing is sent yet
            super().heartbeat(timeout, pipeline)
            return
        self.riding_out(lambda: self._heartbeat(timeout))

    def _heartbeat(self, timeout: int | None) -> None:
        if not self.connection.sismember(self.redis_workers_keys, self.key):
            # Its registration is gone: the queue Redis lost its data (restarted without it).
            # Registered again, the worker is counted (``incidents_workers``, RQ's tools).
            self.log.warning(
                "Worker %s: its registration is gone (the queue Redis lost its data);"
                " registering again",
                self.name,
            )
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipe)
                pipe.execute()
        super().heartbeat(timeout)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: Any, execution: Execution
    ) -> None:
        try:
            super().handle_job_success(job, queue, started_job_registry, execution)
        except InvalidJobOperation:
            # Lost with the queue Redis's data while it ran (only the fields written since are
            # left): nothing to record its end in; its work is recorded in the data Redis.
            self.log.warning("Worker %s: job %s ended after the queue lost it", self.name, job.id)
            self.connection.delete(job.key)

    def set_shutdown_requested_date(self) -> None:
        # Called from the SIGTERM handler: informational only, so an outage must not turn a
        # warm shutdown into an exception in the middle of a job.
        with contextlib.suppress(*RIDE_OUT):
            super().set_shutdown_requested_date()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated

    def subscribe(self) -> None:
        pubsub = self.connection.pubsub()
        pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        listener = CommandListener(pubsub, self._pubsub_exception_handler)
        self.pubsub, self.pubsub_thread = pubsub, listener
        listener.start()

    def unsubscribe(self) -> None:
        pubsub, listener = self.pubsub, self.pubsub_thread
        if pubsub is None or listener is None:
            return
        listener.stop()  # first: the UNSUBSCRIBE reply then ends the listener's read
        try:
            pubsub.unsubscribe()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        finally:
            listener.join(COMMAND_POLL + 1)
            pubsub.close()

    def teardown(self) -> None:
        try:
            super().teardown()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated
        except RIDE_OUT as exc:
            # The worker's registration expires on its own (its heartbeat TTL).
            self.log.warning("Worker %s: exiting without Redis (%s)", self.name, exc)
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()


def wait_for_redis(
    connection: redis.Redis,
    log: logging.Logger,
    who: str,
    exc: BaseException,
    stopping: Callable[[], bool],
) -> bool:
    """Log one line, then back off until Redis answers and takes writes: True; False once
    ``stopping()``."""
    if isinstance(exc, FULL):
        log.warning(
            "%s: Redis is full (%s); waiting with backoff until it takes writes again", who, exc
        )
    else:
        log.warning("%s: Redis is unreachable (%s); reconnecting with backoff", who, exc)
    lost_at = time.monotonic()
    delay = FIRST_BACKOFF
    while True:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if stopping():
                return False
            time.sleep(0.05)
        try:
            connection.ping()
            writable = not refuses_writes(connection)
        except UNAVAILABLE:
            writable = False
        if not writable:
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        log.warning(
            "%s: Redis answers again after %.1f s; carrying on", who, time.monotonic() - lost_at
        )
        return True


def make_worker(
    settings: Settings, connection: redis.Redis, context: WorkerContext | None = None
) -> DeliveryWorker:
    """An RQ worker over the queues on ``connection``: the queue Redis."""
    queues = [Queue(name, connection=connection) for name in QUEUES]
    return DeliveryWorker(
        queues, connection=connection, context=context or WorkerContext.build(settings)
    )


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


# Work a long-running worker does beside its jobs, in a thread of its own until the event is
# set (retention's sweeper): built from the worker's Redis client and clock.
Housekeeping = Callable[[redis.Redis, Callable[[], float]], Callable[[threading.Event], None]]


def run_worker(
    settings: Settings,
    burst: bool = False,
    server_process: bool = False,
    environ: Mapping[str, str] | None = None,
    housekeeping: Housekeeping | None = None,
) -> int:
    """Work the queues; ``server_process``: this process only works, so its start-up objects
    are frozen out of garbage collection before the first job. ``environ``: the process's
    environment, for the ``OTEL_*`` settings of span export; ``housekeeping`` runs beside the
    jobs (not in a burst)."""
    assert settings.redis_url is not None
    if threading.current_thread() is threading.main_thread():
        # Until RQ's work loop installs its warm-shutdown handlers, a stop (say, while waiting
        # for Redis at start-up) ends the process cleanly: no job has been taken yet.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop_while_starting)
    connection = _connect(settings.redis_url)
    queue = connection if settings.queue_redis_url is None else _connect(settings.queue_redis_url)
    context = WorkerContext.build(settings, environ=environ)
    context.spans.open()
    try:
        return _work(settings, connection, queue, context, burst, server_process, housekeeping)
    finally:
        context.spans.close()  # sends the spans still batched


def _connect(url: str) -> redis.Redis:
    """A client of ``url``. A cluster's is built only once a node answers (it reads the slots
    first): until then this waits, with backoff, as a worker waits out any outage."""
    delay = FIRST_BACKOFF
    while True:
        try:
            return connect(url)
        except UNAVAILABLE as exc:
            log.warning(
                "A starting worker: Redis is unreachable (%s); retrying in %.1f s", exc, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


def _work(
    settings: Settings,
    connection: redis.Redis,
    queue: redis.Redis,
    context: WorkerContext,
    burst: bool,
    server_process: bool,
    housekeeping: Housekeeping | None,
) -> int:
    """Work with the data on ``connection`` and RQ on ``queue`` (the same client when RQ
    shares the data Redis)."""
    while True:  # RQ's worker talks to Redis as soon as it is built
        try:
            worker = make_worker(settings, queue, context)
            break
        except RIDE_OUT as exc:
            wait_for_redis(queue, log, "A starting worker", exc, lambda: False)
    scheduler = JobScheduler(connection, settings, context.clock, queue=queue)
    if server_process:
        freeze_startup_objects()
    if burst:
        # Work until nothing is due now; retries scheduled for later are left for later.
        while scheduler.step():
            worker.work(burst=True, logging_level="WARNING")
        return 0
    stop = threading.Event()
    context.listening = True
    thread = threading.Thread(
        target=scheduler.run, args=(stop, context.idle), name="incidents-pump", daemon=True
    )
    thread.start()
    helpers = [thread]
    if housekeeping is not None:
        helpers.append(
            threading.Thread(
                target=housekeeping(connection, context.clock),
                args=(stop,),
                name="incidents-housekeeping",
                daemon=True,
            )
        )
        helpers[-1].start()
    try:
        worker.work(logging_level="WARNING")
    finally:
        stop.set()
        for helper in helpers:
            helper.join(5)
    return 0
