"""The order the tests run in, so that under pytest-xdist the long ones start first, each on a
worker of its own, and the short ones fill in around them.

Each test's time (setup, call and teardown) is remembered in pytest's cache at the end of a
run. The next run deals the tests longest first onto as many piles as there are workers, each
to the pile with the least time so far, and lays the piles end to end: xdist's ``worksteal``
hands each worker one equal run of the collection, so each starts on its own pile's longest
test, and a worker that runs dry takes the tail (the shortest tests) of the busiest. A test
with no time remembered (a new one, or a fresh checkout) counts as ``slow(seconds=...)`` says,
a few seconds if only marked ``slow``, or a short test otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

CACHE_KEY = "incidents/durations"
SHORT = 0.2  # s: most tests, the time a test with no figure and no mark is taken to need
SLOW = 5.0  # s: a test marked slow with no figure


def estimate(item: pytest.Item, known: Mapping[str, float]) -> float:
    """How long ``item`` is expected to take: its last time, else what its mark says."""
    if item.nodeid in known:
        return known[item.nodeid]
    mark = item.get_closest_marker("slow")
    if mark is None:
        return SHORT
    return float(mark.kwargs.get("seconds", SLOW))


def chunk_sizes(count: int, workers: int) -> list[int]:
    """How many tests worksteal gives each worker at the start, in the order it gives them
    (``xdist.scheduler.worksteal``: the pending tests split evenly, the remainder last)."""
    sizes = []
    for i in range(workers):
        size = count // (workers - i)
        sizes.append(size)
        count -= size
    return sizes


def deal(items: Sequence[pytest.Item], known: Mapping[str, float], workers: int) -> list[int]:
    """The indices of ``items`` in the order to run them (see the module's docstring)."""
    times = [estimate(item, known) for item in items]
    longest_first = sorted(range(len(items)), key=lambda i: -times[i])
    if workers <= 1:
        return longest_first
    sizes = chunk_sizes(len(items), workers)
    piles: list[list[int]] = [[] for _ in sizes]
    loads = [0.0] * len(sizes)
    for i in longest_first:
        open_piles = [p for p in range(len(piles)) if len(piles[p]) < sizes[p]]
        pile = min(open_piles, key=lambda p: loads[p])
        piles[pile].append(i)
        loads[pile] += times[i]
    return [i for pile in piles for i in pile]


def order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place for this run's number of xdist workers (one without)."""
    workerinput = getattr(config, "workerinput", None)
    # Every worker deals from the controller's figures.
    known = remembered(config) if workerinput is None else workerinput.get(CACHE_KEY, {})
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = [items[i] for i in deal(items, known, workers)]


def remembered(config: pytest.Config) -> dict[str, float]:
    """Each test's time in the last run that ran it."""
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    found = cache.get(CACHE_KEY, {}) if cache is not None else {}
    return dict(found) if isinstance(found, dict) else {}


class Timings:
    """In the process that sees every report (the xdist controller, or the only process):
    hands the remembered times to each worker, so that all of them order the tests alike
    (xdist stops a run whose workers collected different lists), adds up each test's setup,
    call and teardown times as the reports come in, and merges them into the cache at the
    end."""

    def __init__(self, known: dict[str, float]) -> None:
        self.known = known
        self.seconds: dict[str, float] = {}

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[CACHE_KEY] = self.known

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(session.config, "cache", None)
        if cache is None or not self.seconds:
            return
        known = remembered(session.config)
        known.update({k: round(v, 3) for k, v in self.seconds.items()})
        cache.set(CACHE_KEY, known)


def register(config: pytest.Config) -> None:
    """Install ``Timings`` where it belongs: not in an xdist worker."""
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Timings(remembered(config)), "incidents-timings")
