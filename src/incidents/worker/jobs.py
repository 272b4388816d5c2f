"""The RQ jobs. Each one amortizes queue overhead over many events or deliveries:

- ``route_job`` drains the outbox in batches, queueing one delivery per match;
- ``deliver_job`` works due lanes for a while, many in flight over one HTTP client.

A job runs in an ``incidents worker`` process, which hands it its ``WorkerContext`` (loaded
schemas, the subscription cache, the delivery channels); run by any other RQ worker, a job
builds its own. The context is where the worker's parts are put together: a job's router
(``WorkerContext.router``) and dispatcher (``WorkerContext.dispatcher``) are built there, with
every store over the job's own Redis client (a job runs on an event loop of its own, which
its clients belong to), and handed their collaborators.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from incidents.connectors.channel_base import Channel
from incidents.delivery.address_guard import outbound_client
from incidents.delivery.channel_state import ChannelStateStore
from incidents.delivery.channels import default_channels
from incidents.delivery.dispatch import LANE_SECONDS, Dispatcher, LaneParts
from incidents.delivery.lanes import DeliveryStore
from incidents.delivery.outcomes import Outcomes
from incidents.delivery.throttle import Throttle
from incidents.delivery.transport import AiohttpTransport
from incidents.model.schemas import SchemaRegistry
from incidents.routing.fanout import Router
from incidents.settings import Settings
from incidents.silences.store import SilenceCache, SilenceStore
from incidents.store.redis import connect_async, without_password
from incidents.subscriptions.owner_views import OwnerViews
from incidents.subscriptions.subscription import SubscriptionCache, SubscriptionStore
from incidents.tracing.span_export import WORKER_SERVICE, spans_from_environ
from incidents.tracing.spans import NoSpans, Spans

ROUTE_QUEUE = "incidents-route"
DELIVER_QUEUE = "incidents-deliver"
# A deliver job claims lanes (in a long-running worker: and waits for more) for at most this
# long, or until its worker is asked to stop, then finishes those in flight: a long job keeps
# slots busy without a gap between jobs, which would hold every healthy lane back behind the
# slowest one in flight, and an idle worker already in a job takes new work at once.
DELIVER_SECONDS = 60.0
LANES_IN_FLIGHT = 128
PER_LANE = 20


def _set_event() -> threading.Event:
    found = threading.Event()
    found.set()
    return found


@dataclass
class WorkerContext:
    settings: Settings
    registry: SchemaRegistry
    routes: SubscriptionCache = field(default_factory=SubscriptionCache)
    deliveries: SubscriptionCache = field(default_factory=SubscriptionCache)
    silences: SilenceCache = field(default_factory=SilenceCache)
    channels: Mapping[str, Channel] = field(default_factory=default_channels)
    stopping: threading.Event = field(default_factory=threading.Event)  # the worker is stopping
    # A long-running worker (``incidents worker``, not a burst): its deliver jobs route, and
    # wait for new work with blocking reads, for their whole window instead of ending as soon
    # as nothing is due.
    listening: bool = False
    idle: threading.Event = field(default_factory=_set_event)  # no deliver job runs
    # Unix time for everything delivery schedules, stamps and signs (due lanes, leases,
    # retries, Retry-After pauses, rate windows, the attempt log, webhook timestamps).
    clock: Callable[[], float] = time.time
    # Where the routing and delivery spans go (``tracing.span_export``); opened by the worker.
    spans: Spans = field(default_factory=NoSpans)
    # Redis as this worker reaches it, password included (``settings`` leave that out).
    redis_url: str = field(default="", repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> WorkerContext:
        """The context of a worker; ``environ`` holds its ``OTEL_*`` settings, if any."""
        registry = SchemaRegistry.load(settings.schemas_dir)
        offered = default_channels(settings.secret_key)
        spans = spans_from_environ(environ or {}, WORKER_SERVICE)
        return cls(
            job_settings(settings),
            registry,
            channels=offered,
            clock=clock,
            spans=spans,
            redis_url=settings.redis_url or "",
        )

    def redis(self) -> str:
        """The URL this worker reaches Redis at."""
        url = self.redis_url or self.settings.redis_url
        assert url is not None
        return url

    def router(
        self,
        redis: aioredis.Redis,
        subscriptions: SubscriptionStore | None = None,
        ledger: DeliveryStore | None = None,
    ) -> Router:
        """The fan-out of this context (its routing cache, clock, spans and the stream's
        retention) over ``redis``; ``subscriptions`` and ``ledger``, when given, are stores
        over that same client to share."""
        return Router(
            redis,
            self.routes,
            subscriptions
            if subscriptions is not None
            else SubscriptionStore(redis, self.settings.layout),
            ledger if ledger is not None else DeliveryStore(redis, self.settings.layout),
            clock=self.clock,
            retention=self.settings.stream_retention,
            spans=self.spans,
        )

    def dispatcher(self, redis: aioredis.Redis, client: aiohttp.ClientSession) -> Dispatcher:
        """A dispatcher of this context (settings, schemas, caches, channels, clock), working
        lanes over ``redis`` and sending with ``client``; it claims no more lanes once the
        worker is stopping. Its stores, and its router's, are built here over ``redis``."""
        layout = self.settings.layout
        subscriptions, ledger = SubscriptionStore(redis, layout), DeliveryStore(redis, layout)
        throttle = Throttle(redis, self.clock)
        parts = LaneParts(
            ledger=ledger,
            subscriptions=subscriptions,
            cache=self.deliveries,
            states=ChannelStateStore(redis, layout),
            throttle=throttle,
            owner_views=OwnerViews(redis, self.registry),
            outcomes=Outcomes(self.settings, subscriptions, throttle, self.clock),
            silence_store=SilenceStore(redis),
            silences=self.silences,
        )
        return Dispatcher(
            self.settings,
            redis,
            parts,
            AiohttpTransport(client, self.settings.delivery_timeout),
            self.channels,
            self.router(redis, subscriptions, ledger),
            clock=self.clock,
            stopping=self.stopping.is_set,
            spans=self.spans,
        )


current_context: ContextVar[WorkerContext | None] = ContextVar("incidents_worker", default=None)


def job_settings(settings: Settings) -> Settings:
    """Settings as passed to jobs (stored in Redis with the job, and shown in its description
    by RQ's logs and tools): without the admin token, the key of the stored secrets (a
    worker's own channels hold that) or the Redis passwords (its context holds the data
    Redis's; a job never reaches RQ's)."""
    url = None if settings.redis_url is None else without_password(settings.redis_url)
    queue = settings.queue_redis_url
    return settings.replace(
        admin_token=None,
        secret_key=None,
        redis_url=url,
        queue_redis_url=None if queue is None else without_password(queue),
    )


def _context(settings: Settings) -> WorkerContext:
    found = current_context.get()
    if found is not None and found.settings == settings:
        return found
    # Run by another RQ worker: the job's Redis URL has no password; its environment's may.
    own = os.environ.get("INCIDENTS_REDIS_URL", "").strip()
    if own and settings.redis_url == without_password(own):
        settings = settings.replace(redis_url=own)
    return WorkerContext.build(settings)


def deliver_timeout(settings: Settings) -> int:
    """RQ's job timeout for a deliver job: its claiming window plus the longest a lane can
    take once claimed (its working time, then one more delivery), with room to spare."""
    return int(DELIVER_SECONDS + LANE_SECONDS + settings.delivery_timeout + 60)


def run_on_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run a job's coroutine on uvloop where it is installed (as ``incidents serve`` runs the
    API), else on asyncio's own loop: uvloop's cheaper wake-ups and socket calls cut the
    worker's CPU and latency per delivery."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is there wherever uvicorn[standard] is
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def route_job(settings: Settings) -> int:
    context = _context(settings)
    return run_on_loop(_route(context))


async def _route(context: WorkerContext) -> int:
    redis = connect_async(context.redis())
    try:
        return await context.router(redis).route()
    finally:
        await redis.aclose()


def deliver_job(settings: Settings) -> int:
    context = _context(settings)
    return run_on_loop(_deliver(context))


def _lane_redis(url: str) -> aioredis.Redis:
    """A client whose pool waits for a free connection: many lanes share a few connections."""
    return connect_async(url, max_connections=32)


async def _deliver(context: WorkerContext) -> int:
    settings = context.settings
    redis = _lane_redis(context.redis())
    # Blocking reads (new work, new outbox entries) wait on a client of their own, never
    # holding one of the lanes' connections.
    listen = connect_async(context.redis()) if context.listening else None
    client = outbound_client(
        settings.allow_private_sinks,
        settings.delivery_timeout,
        connections=LANES_IN_FLIGHT,
        allow_insecure=settings.allow_insecure_sinks,
    )
    try:
        dispatcher = context.dispatcher(redis, client)
        context.idle.clear()
        return await dispatcher.run(DELIVER_SECONDS, LANES_IN_FLIGHT, PER_LANE, listen)
    finally:
        context.idle.set()
        await client.close()
        await _close(redis)
        if listen is not None:
            await _close(listen)


async def _close(client: aioredis.Redis) -> None:
    """Close a client and its connections (a cluster client's are its own already)."""
    if isinstance(client, aioredis.RedisCluster):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)
