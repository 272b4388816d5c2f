"""The order the tests run in, so that under pytest-xdist the long ones start first, each on a
worker of its own, and the short ones fill in around them in the order pytest collected them.

Each test's time (setup, call and teardown) is remembered in pytest's cache at the end of a
run. The next run deals the long tests (a few seconds or more), longest first, onto as many
piles as there are workers, each to the pile with the least time so far, then fills each pile
up to its share with the short tests in the order they were given, and lays the piles end to
end: xdist's ``worksteal`` hands each worker one equal run of the collection, so each starts
on its own pile's longest test, and a worker that runs dry takes the tail of the busiest. The
short tests keep their order, so a module's tests stay together (its module-scoped fixtures
are set up once). The tests that share a costly fixture are dealt together, as one long test
(``SHARED``). A test with no time remembered (a new one, or a fresh checkout) counts as
``slow(seconds=...)`` says, a few seconds if only marked ``slow``, or a short test otherwise.
The cache is read once a run, in the process that sees every report, and handed to the
workers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

CACHE_KEY = "incidents/durations"
SHORT = 0.2  # s: most tests, the time a test with no figure and no mark is taken to need
SLOW = 5.0  # s: a test marked slow with no figure
# Fixtures that take seconds to set up and last for a module or the whole run (the wheel in a
# fresh venv, a six-node Redis Cluster, a Chromium): the tests that use one go to one worker
# together, which sets it up once, instead of each worker setting up its own.
SHARED = ("installed", "redis_cluster", "browser")


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


def group_of(item: pytest.Item) -> str | None:
    """The costly fixture ``item`` shares with other tests, if it uses one."""
    return next((name for name in SHARED if name in getattr(item, "fixturenames", ())), None)


def units(items: Sequence[pytest.Item]) -> list[list[int]]:
    """``items``' indices in runs that go to one worker together: the tests that share a
    costly fixture, and each other test alone."""
    groups: dict[str, list[int]] = {}
    found: list[list[int]] = []
    for i, item in enumerate(items):
        name = group_of(item)
        if name is None:
            found.append([i])
        elif name in groups:
            groups[name].append(i)
        else:
            groups[name] = [i]
            found.append(groups[name])
    return found


def deal(items: Sequence[pytest.Item], known: Mapping[str, float], workers: int) -> list[int]:
    """The indices of ``items`` in the order to run them (see the module's docstring)."""
    times = [estimate(item, known) for item in items]

    def cost(run: list[int]) -> float:
        return sum(times[i] for i in run)

    runs = units(items)
    # Long first, longest first (a stable sort: equals keep their order); short in order.
    heavy = sorted((r for r in runs if len(r) > 1 or cost(r) >= SLOW), key=cost, reverse=True)
    light = [i for r in runs if len(r) == 1 and cost(r) < SLOW for i in r]
    if workers <= 1:
        return [i for run in heavy for i in run] + light
    sizes = chunk_sizes(len(items), workers)
    piles: list[list[int]] = [[] for _ in sizes]
    loads = [0.0] * len(sizes)
    while heavy:
        run = heavy.pop(0)
        room = [p for p in range(len(piles)) if len(piles[p]) + len(run) <= sizes[p]]
        if not room:  # too many to keep together this late: deal them one by one
            heavy[:0] = [[i] for i in run]
            continue
        pile = min(room, key=lambda p: loads[p])
        piles[pile].extend(run)
        loads[pile] += cost(run)
    for dealt, size in zip(piles, sizes, strict=True):
        taken = size - len(dealt)
        dealt.extend(light[:taken])
        del light[:taken]
    return [i for pile in piles for i in pile]


def order(items: list[pytest.Item], known: Mapping[str, float]) -> None:
    """Reorder ``items`` in place for this run's number of xdist workers (one without)."""
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
        known = dict(self.known)
        known.update({k: round(v, 3) for k, v in self.seconds.items()})
        cache.set(CACHE_KEY, known)


class Order:
    """Orders the tests once every other plugin has chosen them (``-k``, ``-m``), so that the
    piles match what the workers are given."""

    def __init__(self, known: Mapping[str, float]) -> None:
        self.known = known

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        order(items, self.known)


def register(config: pytest.Config) -> None:
    """Read the remembered times once and install ``Order`` in every process, on those
    times, and ``Timings`` where it belongs: not in an xdist worker, which orders on the
    times its controller hands it."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        known = remembered(config)
        config.pluginmanager.register(Timings(known), "incidents-timings")
    else:
        known = workerinput.get(CACHE_KEY, {})
    config.pluginmanager.register(Order(known), "incidents-order")
