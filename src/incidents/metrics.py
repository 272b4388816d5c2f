"""``GET /metrics``: Prometheus text exposition.

Counters are per process (each API replica exposes its own, as Prometheus expects); gauges
that describe shared state (outbox backlog, lanes, dead letters, subscriptions) are read
from Redis at scrape time, in one pipeline. The workers are counted where RQ keeps them: the
queue Redis (``INCIDENTS_QUEUE_REDIS_URL``) when it has one of its own; out of reach, that
gauge alone is left out.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incidents.api.toolkit.app_services import services
from incidents.delivery import delivery_metrics
from incidents.errors import IncidentsError, StoreUnavailable
from incidents.retention.sweeper import KINDS as RETENTION_KINDS
from incidents.store import keys
from incidents.store.redis import UNAVAILABLE, guarded
from incidents.store.redis_memory import refuses_writes_async
from incidents.store.scripts import load_script
from incidents.usecases.event_submission import Submitted
from incidents.worker.jobs import DELIVER_QUEUE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The delivery workers RQ has registered for the deliver queue (a worker's own key expires
# when it stops heartbeating, so counting those that exist counts the live ones).
WORKERS = "rq:workers:" + DELIVER_QUEUE
UNROUTED_CAP = 1_000_000  # the backlog gauge counts this many at most (a scrape stays cheap)


class Metrics:
    """Per-process request counters and a latency histogram."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency_buckets: Counter[tuple[str, float]] = Counter()
        self.latency_sum: dict[str, float] = {}
        self.latency_count: Counter[str] = Counter()
        self.events: Counter[str] = Counter()  # accepted, duplicate, rejected
        self.client_disconnects = 0  # clients that left while their body was being read
        self.redis_errors = 0  # requests answered 503 because Redis could not be reached
        self.redis_full_refusals = 0  # requests answered 503 redis-full

    @contextmanager
    def counting_events(self) -> Iterator[Callable[[Submitted], Submitted]]:
        """Around one submission of events (``POST /v1/events``, a console incident command):
        an ``IncidentsError`` raised inside counts as one refusal of its kind; the submission
        handed to the function it yields counts as its accepted and duplicate events, and is
        handed back."""

        def submitted(done: Submitted) -> Submitted:
            self.events["accepted"] += len(done.accepted) - done.duplicates
            self.events["duplicate"] += done.duplicates
            return done

        try:
            yield submitted
        except IncidentsError as exc:
            self.events["rejected:" + exc.slug] += 1
            raise

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.latency_sum[route] = self.latency_sum.get(route, 0.0) + seconds
        self.latency_count[route] += 1
        # Counted in the smallest bucket that holds it; ``render`` sums them up (le= is
        # cumulative), so a request costs one count, not one per bucket.
        index = bisect_left(self.BUCKETS, seconds)
        if index < len(self.BUCKETS):
            self.latency_buckets[(route, self.BUCKETS[index])] += 1

    async def render(
        self,
        redis: aioredis.Redis,
        queue: aioredis.Redis | None = None,
        layout: keys.Partitions = keys.ONE,
    ) -> str:
        """The exposition; ``redis``: the data Redis, ``queue``: RQ's (default: the same);
        ``layout``: the data's partitions, whose gauges and counts are summed."""
        lines = [
            "# HELP incidents_http_requests_total HTTP requests by method, route and status.",
            "# TYPE incidents_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(
                f'incidents_http_requests_total{{method="{method}",route="{route}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP incidents_http_request_seconds Request latency by route.",
            "# TYPE incidents_http_request_seconds histogram",
        ]
        for route in sorted(self.latency_count):
            n = 0
            for bound in self.BUCKETS:
                n += self.latency_buckets[(route, bound)]
                lines.append(
                    f'incidents_http_request_seconds_bucket{{route="{route}",le="{bound}"}} {n}'
                )
            count = self.latency_count[route]
            lines.append(
                f'incidents_http_request_seconds_bucket{{route="{route}",le="+Inf"}} {count}'
            )
            total = self.latency_sum[route]
            lines.append(f'incidents_http_request_seconds_sum{{route="{route}"}} {total:.6f}')
            lines.append(f'incidents_http_request_seconds_count{{route="{route}"}} {count}')
        lines += [
            "# HELP incidents_events_total Events by outcome at ingest.",
            "# TYPE incidents_events_total counter",
        ]
        for outcome, n in sorted(self.events.items()):
            lines.append(f'incidents_events_total{{outcome="{outcome}"}} {n}')
        lines += [
            "# HELP incidents_client_disconnects_total Requests whose client went away while "
            "its body was being read.",
            "# TYPE incidents_client_disconnects_total counter",
            f"incidents_client_disconnects_total {self.client_disconnects}",
            "# HELP incidents_redis_errors_total Requests answered 503 because Redis could not "
            "be reached (or a replica did not confirm in time).",
            "# TYPE incidents_redis_errors_total counter",
            f"incidents_redis_errors_total {self.redis_errors}",
            "# HELP incidents_redis_full_refusals_total Requests answered 503 redis-full: Redis"
            " was at maxmemory and refused the write.",
            "# TYPE incidents_redis_full_refusals_total counter",
            f"incidents_redis_full_refusals_total {self.redis_full_refusals}",
        ]
        up = [
            "# HELP incidents_redis_up Whether this process reached Redis for this scrape (the "
            "gauges of shared state are left out when it did not).",
            "# TYPE incidents_redis_up gauge",
        ]
        try:
            lines += await _shared_state(redis, redis if queue is None else queue, layout)
        except StoreUnavailable:
            return "\n".join([*lines, *up, "incidents_redis_up 0"]) + "\n"
        lines += [*up, "incidents_redis_up 1"]
        return "\n".join(lines) + "\n"


async def _shared_state(
    redis: aioredis.Redis, queue: aioredis.Redis, layout: keys.Partitions = keys.ONE
) -> list[str]:
    """The gauges of state every process shares (outbox, lanes, dead letters, subscriptions,
    workers) and the per-subscription delivery metrics, read from Redis (the workers from
    ``queue``, RQ's Redis): each partition's summed (the last sequence: the highest)."""
    now = time.time()
    async with guarded("reading metrics"):
        pipe = redis.pipeline(transaction=False)
        for space in layout:
            pipe.xlen(space.OUTBOX)
            pipe.get(space.SEQUENCE)
            pipe.zcard(space.DEAD_LETTERS)
            pipe.zcount(space.LANES_DUE, "-inf", now)
            pipe.zcount(space.LANES_DUE, f"({now!r}", "+inf")
            pipe.zcard(space.LANES_LEASED)
            pipe.hgetall(space.RETENTION_REMOVED)
        pipe.scard(keys.SUBSCRIPTIONS)
        if queue is redis:
            pipe.smembers(WORKERS)
        pipe.zcount(keys.SILENCES, f"({now!r}", "+inf")
        found = await pipe.execute()
        per_space = [found[i : i + 7] for i in range(0, 7 * len(layout), 7)]
        rest = found[7 * len(layout) :]
        retained, dead, due_now, due_later, leased = (
            sum(int(p[n]) for p in per_space) for n in (0, 2, 3, 4, 5)
        )
        last = max(
            layout.sequence(space, int(p[1] or 0)) if p[1] else 0
            for space, p in zip(layout, per_space, strict=True)
        )
        swept = _summed([p[6] for p in per_space])
        subs, silences = rest[0], rest[-1]
        unrouted = redis.register_script(load_script("outbox"))
        backlog = 0
        for space in layout:
            backlog += int(
                await unrouted(
                    keys=[space.OUTBOX], args=[keys.ROUTER_GROUP, 0, UNROUTED_CAP - backlog]
                )
            )
            if backlog >= UNROUTED_CAP:
                break
        workers: int | None = await _workers(queue, rest[1] if queue is redis else None)
        per_subscription = await delivery_metrics.read(redis, layout)
        full = await refuses_writes_async(redis)
    return [
        "# HELP incidents_outbox_length Accepted events not routed to subscriptions yet "
        f"(counted up to {UNROUTED_CAP}).",
        "# TYPE incidents_outbox_length gauge",
        f"incidents_outbox_length {int(backlog)}",
        "# HELP incidents_outbox_retained Recent events kept in the outbox stream, routed or "
        "not (INCIDENTS_STREAM_RETENTION once routed).",
        "# TYPE incidents_outbox_retained gauge",
        f"incidents_outbox_retained {retained}",
        "# HELP incidents_last_sequence The last gateway sequence assigned.",
        "# TYPE incidents_last_sequence gauge",
        f"incidents_last_sequence {int(last or 0)}",
        "# HELP incidents_dead_letters Deliveries that ran out of retries, not yet redriven.",
        "# TYPE incidents_dead_letters gauge",
        f"incidents_dead_letters {dead}",
        "# HELP incidents_lanes_due Lanes waiting for a worker: due now, or at a later retry time.",
        "# TYPE incidents_lanes_due gauge",
        f'incidents_lanes_due{{when="now"}} {due_now}',
        f'incidents_lanes_due{{when="later"}} {due_later}',
        "# HELP incidents_lanes_leased Lanes a worker holds (a dead worker's count until "
        "its lease runs out and the lane is claimed again).",
        "# TYPE incidents_lanes_leased gauge",
        f"incidents_lanes_leased {leased}",
        "# HELP incidents_subscriptions Subscriptions, active or disabled.",
        "# TYPE incidents_subscriptions gauge",
        f"incidents_subscriptions {subs}",
        "# HELP incidents_silences Silences that have not ended (pending or active).",
        "# TYPE incidents_silences gauge",
        f"incidents_silences {silences}",
        "# HELP incidents_redis_full 1 while Redis is at maxmemory and refuses writes (events"
        " are answered 503 redis-full), else 0.",
        "# TYPE incidents_redis_full gauge",
        f"incidents_redis_full {int(full)}",
        *_workers_gauge(workers),
        *per_subscription,
        "# HELP incidents_retention_removed_total What retention removed, by kind (all"
        " workers together).",
        "# TYPE incidents_retention_removed_total counter",
        *_removed(swept),
    ]


def _summed(hashes: list[dict[bytes, bytes]]) -> dict[bytes, bytes]:
    """Count hashes (field -> integer) added up."""
    total: dict[bytes, int] = {}
    for found in hashes:
        for name, n in found.items():
            total[name] = total.get(name, 0) + int(n)
    return {name: str(n).encode() for name, n in total.items()}


async def _workers(queue: aioredis.Redis, registered: set[bytes] | None) -> int | None:
    """The live delivery workers RQ has registered. ``registered``: that set, read with the
    data when RQ shares the data Redis; None: read here from RQ's own Redis, and None back
    when that cannot be reached (the gauge is left out, the others stay)."""
    if registered is not None:
        return int(await queue.exists(*registered)) if registered else 0
    try:
        found = await queue.smembers(WORKERS)
        return int(await queue.exists(*found)) if found else 0
    except UNAVAILABLE:
        return None


def _workers_gauge(workers: int | None) -> list[str]:
    if workers is None:
        return []
    return [
        "# HELP incidents_workers Delivery workers alive (registered and heartbeating).",
        "# TYPE incidents_workers gauge",
        f"incidents_workers {workers}",
    ]


def _removed(swept: dict[bytes, bytes]) -> list[str]:
    counts = {k.decode(): int(v) for k, v in swept.items()}
    return [
        f'incidents_retention_removed_total{{kind="{kind}"}} {counts.get(kind, 0)}'
        for kind in sorted({*RETENTION_KINDS, *counts})
    ]


class MetricsMiddleware:
    """Counts every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Route]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._cache: dict[str, str] = {}

    def _template(self, scope: Scope) -> str:
        path = scope["path"]
        known = self._cache.get(path)
        if known is not None:
            return known
        template = "unmatched"
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                template = route.path
                break
        if len(self._cache) < 4096:  # bounded: paths with ids would otherwise grow it forever
            self._cache[path] = template
        return template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: MutableMapping[str, int] = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(
                scope["method"], self._template(scope), status["code"], time.perf_counter() - start
            )


async def get_metrics(request: Request) -> Response:
    svc = services(request)
    metrics: Metrics = request.app.state.metrics
    found = await metrics.render(svc.redis, svc.queue_redis, svc.settings.layout)
    return Response(found, media_type=CONTENT_TYPE)


def routes() -> list[Route]:
    return [Route("/metrics", get_metrics, methods=["GET"])]


def openapi_paths() -> dict[str, object]:
    text = {
        "description": "Prometheus text format",
        "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
    }
    return {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "description": "Answers while Redis is unreachable too: then "
                "incidents_redis_up is 0 and the gauges of shared state are left out.",
                "responses": {"200": text},
            }
        }
    }
