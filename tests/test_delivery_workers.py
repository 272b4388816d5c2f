"""Real ``incidents worker`` processes: retries fire, a SIGKILL loses nothing, lanes run
concurrently."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from incidents.settings import Settings
from tests.delivery_support import Receiver, Workers, publish, start_worker, subscribe
from tests.support import event, wait_for


@pytest.mark.slow
def test_a_worker_process_fires_delayed_retries(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """`incidents worker` routes, delivers, and retries a failed delivery on schedule."""
    subscribe(client, rx, "/proc")
    rx.scripts["/proc"] = [(500, {}), (500, {})]
    publish(client, event("im.incident.declare"))
    worker = start_worker(settings)
    try:
        wait_for(lambda: len(rx.at("/proc")) == 3, 20)
    finally:
        worker.terminate()
        worker.wait(30)
    assert all(r.verified for r in rx.at("/proc"))


@pytest.mark.slow
def test_sigkill_mid_delivery_loses_nothing(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A worker killed while a sink is answering leaves the delivery to the next worker, which
    sends it again under the same webhook-id; the log ends delivered."""
    sub = subscribe(client, rx, "/kill")
    rx.delay = 5.0
    publish(client, event("im.incident.declare"))
    first = start_worker(settings)
    try:
        wait_for(lambda: len(rx.at("/kill")) == 1, 20)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    rx.delay = 0.0
    second = start_worker(settings)
    try:
        wait_for(lambda: len(rx.at("/kill")) == 2, 20)
        check = Workers(settings)
        try:
            wait_for(lambda: len(check.deliveries(client, sub["id"])) == 1, 10)
            (entry,) = check.deliveries(client, sub["id"])
        finally:
            check.close()
    finally:
        second.terminate()
        second.wait(30)
    one, two = rx.at("/kill")
    assert one.headers["webhook-id"] == two.headers["webhook-id"]
    assert entry["outcome"] == "delivered"


def test_lanes_are_delivered_concurrently(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """200 events of 200 incidents to a sink that takes 50 ms each are delivered in far less
    than the 10 s one-at-a-time would take, each verified once."""
    subscribe(client, rx, "/many")
    rx.delay = 0.05
    events = [event("im.incident.declare", imincidentid=f"INC-{i}") for i in range(200)]
    for start in range(0, 200, 50):
        publish(client, *events[start : start + 50])
    workers = Workers(settings)
    try:
        started = time.monotonic()
        workers.run_until(lambda: len(rx.at("/many")) >= 200, timeout=20)
        took = time.monotonic() - started
    finally:
        workers.close()
    assert took < 5
    assert sorted(r.event["id"] for r in rx.at("/many")) == sorted(e["id"] for e in events)
    assert all(r.verified for r in rx.at("/many"))
