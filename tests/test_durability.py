"""Restarting Redis with AOF on: accepted events and queued deliveries survive, and every event
still reaches its subscriber, in order per incident."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from incidents.settings import Settings
from incidents.store.embedded import EmbeddedRedis
from incidents.store.keys import OUTBOX, ROUTER_GROUP
from incidents.worker.process import make_worker
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import admin_gateway, event

INCIDENTS = ("INC-31", "INC-32", "INC-33")
NOTES = 3  # per incident, after its declare


@dataclass
class Stack:
    """The gateway and its workers against a private redis-server that persists with AOF."""

    redis: EmbeddedRedis
    settings: Settings
    client: httpx.Client
    workers: Workers

    def run_id(self) -> str:
        with redis.Redis.from_url(self.redis.url) as connection:
            return str(connection.info("server")["run_id"])

    def restart_redis(self) -> None:
        """A clean shutdown (SIGTERM writes out the AOF) and a start on the same port and data."""
        before = self.run_id()
        self.redis.stop()
        self.redis.start()
        assert self.run_id() != before

    def work_once(self) -> None:
        """One pass of a burst worker: a routing job, then a delivery job."""
        for _ in range(2):
            self.workers.scheduler.step()
            make_worker(self.settings, self.workers.connection, self.workers.context).work(
                burst=True, logging_level="WARNING"
            )


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """The real app and in-process workers against a fresh redis-server with AOF on."""
    server = EmbeddedRedis(tmp_path / "redis", os.environ, appendonly=True)
    server.start()
    try:
        durable = settings.replace(redis_url=server.url, retry_schedule=(1.0,) * 5)
        with (
            admin_gateway(durable) as client,
        ):
            workers = Workers(durable)
            try:
                yield Stack(server, durable, client, workers)
            finally:
                workers.close()
    finally:
        server.stop()


def incident_events() -> list[dict[str, Any]]:
    """A declare and some notes for each incident, interleaved across incidents."""
    declares = [event("im.incident.declare", imincidentid=i) for i in INCIDENTS]
    notes = [event("im.incident.note", imincidentid=i) for _ in range(NOTES) for i in INCIDENTS]
    return declares + notes


def delivered_in_order(received: list[Any]) -> dict[str, list[str]]:
    """Event ids per incident, in arrival order, counting each webhook-id once."""
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for r in received:
        assert r.verified
        if r.headers["webhook-id"] in seen:
            continue
        seen.add(r.headers["webhook-id"])
        out.setdefault(r.event["imincidentid"], []).append(r.event["id"])
    return out


def arrived(received: list[Any]) -> int:
    """How many distinct deliveries (webhook-ids) arrived."""
    return sum(len(ids) for ids in delivered_in_order(received).values())


def expected_order(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Event ids per incident, in the order the gateway accepted them."""
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e["imincidentid"], []).append(e["id"])
    return out


def test_queued_retries_survive_a_redis_restart(stack: Stack, rx: Receiver) -> None:
    """Deliveries that failed and wait for their retry are still queued after Redis restarts;
    once the sink recovers every event arrives, in acceptance order per incident."""
    sub = subscribe(stack.client, rx, "/durable")
    rx.scripts["/durable"] = [(500, {})] * 1000
    events = incident_events()
    publish(stack.client, *events)
    stack.work_once()
    failed = stack.workers.deliveries(stack.client, sub["id"])
    # Each incident's declare (its lane's head) failed; the notes wait behind it.
    assert {a["event_id"] for a in failed} == {e["id"] for e in events[: len(INCIDENTS)]}
    assert {a["outcome"] for a in failed} == {"failed"}
    assert all(a["next_attempt"] is not None for a in failed)
    with redis.Redis.from_url(stack.redis.url) as connection:
        assert connection.config_get("appendonly") == {"appendonly": "yes"}
        # Routed (nothing left pending in the router's group) and kept for readers of recent
        # events: what is left to do is queued deliveries.
        assert connection.xpending(OUTBOX, ROUTER_GROUP)["pending"] == 0
        assert connection.xlen(OUTBOX) == len(events)

    stack.restart_redis()
    tried = len(rx.at("/durable"))
    rx.scripts["/durable"] = []

    stack.workers.run_until(lambda: arrived(rx.at("/durable")[tried:]) == len(events), timeout=15)
    assert delivered_in_order(rx.at("/durable")[tried:]) == expected_order(events)
    log = stack.workers.deliveries(stack.client, sub["id"])
    assert log[: len(failed)] == failed  # the attempt log survived the restart too
    assert [a["outcome"] for a in log[len(failed) :]] == ["delivered"] * len(events)


def test_events_still_in_the_outbox_survive_a_redis_restart(stack: Stack, rx: Receiver) -> None:
    """Events accepted while no worker runs wait only in the outbox; after Redis restarts
    they are routed and delivered, every one, in acceptance order per incident."""
    subscribe(stack.client, rx, "/outbox")
    events = incident_events()
    publish(stack.client, *events)
    with redis.Redis.from_url(stack.redis.url) as connection:
        assert connection.xlen(OUTBOX) == len(events)

    stack.restart_redis()
    stack.workers.run_until(lambda: arrived(rx.at("/outbox")) == len(events), timeout=15)
    assert delivered_in_order(rx.at("/outbox")) == expected_order(events)
    later = event("im.incident.note", imincidentid=INCIDENTS[0])
    publish(stack.client, later)  # the gateway itself carries on against the restarted Redis
    stack.workers.run_until(lambda: arrived(rx.at("/outbox")) > len(events), timeout=15)
    assert rx.at("/outbox")[-1].event["id"] == later["id"]
