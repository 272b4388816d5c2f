"""Bounded memory: under a constant load that runs longer than the retention, Redis stops
growing once the first retention window has passed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis

from incidents.retention.sweeper import ROUND_SECONDS, SWEEP_EVERY
from incidents.settings import Duration, Settings
from tests.delivery_support import Receiver, publish, start_worker, subscribe
from tests.support import admin_gateway, event, running_redis

RETENTION = Duration(60)
# The first window: the retention, then the sweeper's next round, which removes what fell due
# at its end (a worker sweeps every SWEEP_EVERY seconds, for at most ROUND_SECONDS).
FIRST_WINDOW = RETENTION.seconds + SWEEP_EVERY + ROUND_SECONDS
ROUND = 15.0  # seconds of load in each of the two rounds compared
NOTES = 12  # per incident; one incident cycle a second: 15 events/s
# Large notes, so that what a round adds is what used_memory is made of: were nothing removed,
# the second round would average 16-17% above the first (with 1 KB notes only 6-9%, under the
# 10% bound: Redis's own overhead and the id index's buckets outweighed the events).
NOTE_BYTES = 16 * 1024


def cycle(client: httpx.Client, n: int) -> None:
    """One incident's life: declared, noted, resolved and closed."""
    incident = f"INC-{n}"
    note = {"text": "x" * NOTE_BYTES}
    publish(
        client,
        event(imincidentid=incident),
        *[event("im.incident.note", note, imincidentid=incident) for _ in range(NOTES)],
    )
    publish(client, event("im.incident.resolve", imincidentid=incident))
    publish(client, event("im.incident.close", imincidentid=incident))


def load_for(
    client: httpx.Client, watched: redis.Redis, seconds: float, first: int
) -> tuple[int, float]:
    """One incident cycle a second for ``seconds``: the next cycle's number, and Redis's
    ``used_memory`` averaged over the round (read after each cycle, so that the sweeper's
    rounds, every few seconds, are averaged out instead of caught at one point)."""
    n, start, used = first, time.monotonic(), []
    while time.monotonic() - start < seconds:
        cycle(client, n)
        used.append(int(watched.info("memory")["used_memory"]))
        n += 1
        time.sleep(max(0.0, start + (n - first) - time.monotonic()))
    return n, sum(used) / len(used)


@pytest.mark.slow(seconds=100)  # a load longer than a 60 s retention: run first
@pytest.mark.timeout(300)
def test_memory_stops_growing_under_a_constant_load_longer_than_the_retention(
    settings: Settings, rx: Receiver, tmp_path: Path
) -> None:
    """With INCIDENTS_RETENTION=60s (and closed incidents kept 60s), a steady load of
    incidents, notes and deliveries grows Redis for the first window; after it, used_memory
    averaged over a round grows no more than 10% from one round to the next."""
    with running_redis(tmp_path / "redis", appendonly=False) as own:
        local = settings.replace(
            redis_url=own.url, retention=RETENTION, incident_retention=RETENTION
        )
        watched = redis.Redis.from_url(own.url)
        worker = start_worker(local, INCIDENTS_RETENTION="60s", INCIDENTS_INCIDENT_RETENTION="60s")
        try:
            with admin_gateway(local) as client:
                subscribe(client, rx, "/hook")
                n, _ = load_for(client, watched, FIRST_WINDOW, 1)
                n, first = load_for(client, watched, ROUND, n)
                n, second = load_for(client, watched, ROUND, n)
        finally:
            worker.terminate()
            worker.wait(30)
            watched.close()
    assert rx.at("/hook"), "nothing was delivered"
    growth = second / first - 1
    assert growth <= 0.10, (
        f"used_memory averaged {first:.0f} then {second:.0f} bytes: {growth:+.1%}"
    )
