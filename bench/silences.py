"""What silences cost a delivery: the check a worker makes before sending each one.

    .venv/bin/python bench/silences.py [--rounds 20000]

In process, no Redis: a worker holds the silences that have not ended in memory (reloaded only
when ``incidents:silences:version`` moves) and works out which are active once per change of
state (a start, an end, a weekly window opening or closing), so a delivery is matched only
against the silences active now that cover its subscription. Measured, in microseconds per
delivery and as a ratio to the baseline of the same run (matching the event against one
subscription, which every delivery pays anyway), with silences none of which holds the event
(the worst case: each candidate is looked at):

- ``pending``: N weekly silences, all outside their window now;
- ``active, all subs``: N active silences that hold every subscription (an admin's);
- ``active, other subs``: N active silences scoped to other subscriptions;
- ``recompute``: working out the active set again at a change of state, per silence.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incidents.model.cloudevent import CloudEvent  # noqa: E402
from incidents.silences.silence import Silence, parse_silence  # noqa: E402
from incidents.silences.store import SilenceCache, SilenceStore  # noqa: E402
from incidents.subscriptions.spec import parse_spec  # noqa: E402  # after the path
from incidents.subscriptions.subscription import new_subscription  # noqa: E402

NOW = datetime(2026, 5, 3, 12, 0, tzinfo=UTC)  # a Sunday, outside the weekly windows
EVENT = CloudEvent(
    {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/monitoring",
        "type": "im.incident.ack",
        "imincidentid": "INC-1",
        "imseverity": "SEV2",
        "imstatus": "open",
        "imservice": "checkout",
    }
)


def silences(count: int, weekly: bool, scoped: bool) -> list[Silence]:
    out = []
    for i in range(count):
        body: dict[str, object] = {
            "filter": {"exact": {"imservice": f"service-{i}"}},
            "ends_at": (NOW + timedelta(days=7)).isoformat(),
            "comment": "maintenance",
        }
        if weekly:
            body["recurrence"] = {
                "weekly": {"days": ["sun"], "start": "02:00", "end": "04:00",
                           "timezone": "Europe/Paris"}
            }  # fmt: skip
        if scoped:
            body["subscriptions"] = [f"sub_other_{i}"]
        out.append(parse_silence(body, "admin", NOW - timedelta(hours=1)))
    return out


class Loaded(SilenceStore):
    """A store that answers from memory (what the worker's cache loads once)."""

    def __init__(self, held: list[Silence]) -> None:
        self.held = held

    async def list(self, after: datetime | None = None, limit: int | None = None) -> list[Silence]:
        return self.held


def per_delivery_us(rounds: int, held: list[Silence]) -> float:
    store, cache = Loaded(held), SilenceCache()

    async def run() -> float:
        await cache.holding(store, "sub_1", EVENT.attributes, NOW)  # works out the active set
        start = time.perf_counter()
        for _ in range(rounds):
            if await cache.holding(store, "sub_1", EVENT.attributes, NOW) is not None:
                raise AssertionError("no silence should hold the event")
        return (time.perf_counter() - start) / rounds * 1e6

    return asyncio.run(run())


def recompute_us(held: list[Silence]) -> float:
    """Working out the active set at a change of state, per silence."""
    store = Loaded(held)

    async def run() -> float:
        start = time.perf_counter()
        for minute in range(20):
            cache = SilenceCache()
            await cache.holding(store, "sub_1", EVENT.attributes, NOW + timedelta(minutes=minute))
        return (time.perf_counter() - start) / 20 / len(held) * 1e6

    return asyncio.run(run())


def baseline_us(rounds: int) -> float:
    spec, _ = parse_spec(
        {"sink": "https://example.com/hook", "types": ["im.incident.*"],
         "filters": [{"exact": {"imseverity": "SEV2"}}]}
    )  # fmt: skip
    sub = new_subscription(spec, "admin", NOW)
    start = time.perf_counter()
    for _ in range(rounds):
        if not sub.matches(EVENT):
            raise AssertionError("the subscription should match")
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    base = baseline_us(args.rounds)
    print(f"baseline: one subscription match {base:.2f} us per delivery")
    print(f"{'scenario':<20} {'silences':>9} {'us/delivery':>12} {'x baseline':>11}")
    scenarios = {
        "pending": (True, False),
        "active, all subs": (False, False),
        "active, other subs": (False, True),
    }
    for name, (weekly, scoped) in scenarios.items():
        for count in (0, 10, 100, 1000):
            held = silences(count, weekly, scoped)
            rounds = max(500, args.rounds // max(1, count))
            cost = per_delivery_us(rounds, held)
            print(f"{name:<20} {count:>9} {cost:>12.2f} {cost / base:>11.2f}")
    held = silences(1000, True, False)
    print(f"recompute: {recompute_us(held):.1f} us per weekly silence at each change of state")


if __name__ == "__main__":
    main()
