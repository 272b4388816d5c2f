"""Bounded memory: under a constant load that runs longer than the retention, Redis stops
growing once the first retention window has passed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis

from incidents.settings import Duration, Settings
from tests.delivery_support import Receiver, publish, start_worker, subscribe
from tests.support import (
    admin_gateway,
    event,
    running_redis,
)

RETENTION = Duration(60)
ROUND = 20.0  # seconds of load between two measures
NOTES = 12  # per incident, 1 KB each; one incident cycle a second: ~15 events/s


def cycle(client: httpx.Client, n: int) -> None:
    """One incident's life: declared, noted, resolved and closed."""
    incident = f"INC-{n}"
    note = {"text": "x" * 1024}
    publish(
        client,
        event(imincidentid=incident),
        *[event("im.incident.note", note, imincidentid=incident) for _ in range(NOTES)],
    )
    publish(client, event("im.incident.resolve", imincidentid=incident))
    publish(client, event("im.incident.close", imincidentid=incident))


def load_for(client: httpx.Client, seconds: float, first: int) -> int:
    """One incident cycle a second for ``seconds``; the next cycle's number."""
    n, start = first, time.monotonic()
    while time.monotonic() - start < seconds:
        cycle(client, n)
        n += 1
        time.sleep(max(0.0, start + (n - first) - time.monotonic()))
    return n


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


@pytest.mark.slow(seconds=140)  # a load longer than a 60 s retention: run first
@pytest.mark.timeout(300)
def test_memory_stops_growing_under_a_constant_load_longer_than_the_retention(
    settings: Settings, rx: Receiver, tmp_path: Path
) -> None:
    """With INCIDENTS_RETENTION=60s (and closed incidents kept 60s), a steady load of
    incidents, notes and deliveries grows Redis for the first window, then no more than 10%
    from one round to the next."""
    with running_redis(tmp_path / "redis", appendonly=False) as own:
        local = settings.replace(
            redis_url=own.url, retention=RETENTION, incident_retention=RETENTION
        )
        watched = redis.Redis.from_url(own.url)
        worker = start_worker(local, INCIDENTS_RETENTION="60s", INCIDENTS_INCIDENT_RETENTION="60s")
        try:
            with (
                admin_gateway(local) as client,
            ):
                subscribe(client, rx, "/hook")
                n = load_for(client, RETENTION.seconds + 2 * ROUND, 1)  # the first window
                first = used_memory(watched)
                n = load_for(client, ROUND, n)
                second = used_memory(watched)
                n = load_for(client, ROUND, n)
                third = used_memory(watched)
        finally:
            worker.terminate()
            worker.wait(30)
            watched.close()
    assert rx.at("/hook"), "nothing was delivered"
    growth = [second / first - 1, third / second - 1]
    assert max(growth) <= 0.10, f"used_memory {first} -> {second} -> {third} bytes"
