"""The test order (tests/scheduling.py): the long tests head a pile each, one pile per xdist
worker, and the tests sharing a costly fixture stay together."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import cast

import pytest

from tests.scheduling import CACHE_KEY, Order, Timings, chunk_sizes, deal, register


@dataclass
class Stub:
    """What the order reads of a test: its id, its marks and its fixtures."""

    nodeid: str
    fixturenames: tuple[str, ...] = ()
    slow: pytest.Mark | None = None

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return self.slow if name == "slow" else None


def items(*stubs: Stub) -> list[pytest.Item]:
    return cast(list[pytest.Item], list(stubs))


def test_the_piles_are_as_long_as_worksteal_s_first_share_of_the_collection() -> None:
    """Ten tests on four workers: worksteal sends 2, 2, 3 and 3."""
    assert chunk_sizes(10, 4) == [2, 2, 3, 3]
    assert sum(chunk_sizes(1701, 4)) == 1701


def test_each_of_the_longest_tests_starts_a_pile_of_its_own() -> None:
    """The two long tests are first in the two piles; the short ones fill in behind."""
    known = {"long-a": 100.0, "long-b": 90.0}
    tests = items(*(Stub(f"short-{n}") for n in range(4)), Stub("long-b"), Stub("long-a"))
    order = [tests[i].nodeid for i in deal(tests, known, workers=2)]
    assert order[0] == "long-a" and order[3] == "long-b"
    assert sorted(order) == sorted(t.nodeid for t in tests)


def test_a_slow_mark_counts_where_no_time_is_known() -> None:
    """With nothing remembered, slow(seconds=...) puts its test before a plainly slow one."""
    tests = items(
        Stub("plain"), Stub("slow", slow=pytest.mark.slow.mark), Stub("long", slow=_slow(140))
    )
    assert [tests[i].nodeid for i in deal(tests, {}, workers=1)] == ["long", "slow", "plain"]


def test_the_tests_sharing_a_costly_fixture_go_to_one_pile_together() -> None:
    """The three tests of the wheel are dealt into one pile, one after another."""
    wheel = [Stub(f"wheel-{n}", ("installed",)) for n in range(3)]
    tests = items(*wheel, *(Stub(f"short-{n}") for n in range(9)))
    order = [tests[i].nodeid for i in deal(tests, {}, workers=4)]
    at = sorted(order.index(w.nodeid) for w in wheel)
    assert at == list(range(at[0], at[0] + 3))
    starts = [0, 3, 6, 9]  # chunk_sizes(12, 4)
    assert at[0] in starts


def test_the_short_tests_keep_the_order_they_were_given() -> None:
    """Around a long test, the short ones run in the order given, whatever their times, so
    a module's tests stay together (its module-scoped fixtures are set up once a worker)."""
    shorts = [f"short-{n}" for n in range(10)]
    known = {name: 0.1 + (n * 7 % 10) / 10 for n, name in enumerate(shorts)} | {"long": 50.0}
    tests = items(*(Stub(name) for name in shorts[:6]), Stub("long"), *map(Stub, shorts[6:]))
    for workers in (1, 2, 4):
        order = [tests[i].nodeid for i in deal(tests, known, workers)]
        assert order[0] == "long"
        assert order[1:] == shorts, workers


class Cache:
    """pytest's cache, counting its reads."""

    def __init__(self, stored: dict[str, float]) -> None:
        self.stored, self.reads = {CACHE_KEY: stored}, 0

    def get(self, key: str, default: object) -> object:
        self.reads += 1
        return self.stored.get(key, default)

    def set(self, key: str, value: dict[str, float]) -> None:
        self.stored[key] = value


@dataclass
class Config:
    """What the order reads of pytest's config: the cache and the plugin manager."""

    cache: Cache
    plugins: dict[str, object]

    @property
    def pluginmanager(self) -> Config:
        return self

    def register(self, plugin: object, name: str) -> None:
        self.plugins[name] = plugin


def test_a_run_reads_the_remembered_times_once_and_merges_its_own() -> None:
    """Ordering a run and recording its times read the cache once; what is written back is
    this run's times over the remembered ones."""
    cache = Cache({"long": 9.0, "gone": 1.0, "short": 0.1})
    config = Config(cache, {})
    register(cast(pytest.Config, config))
    order, timings = config.plugins["incidents-order"], config.plugins["incidents-timings"]
    assert isinstance(order, Order) and isinstance(timings, Timings)
    tests = items(Stub("short"), Stub("long"))
    order.pytest_collection_modifyitems(cast(pytest.Config, config), tests)
    assert [t.nodeid for t in tests] == ["long", "short"]
    for nodeid, seconds in (("short", 0.25), ("long", 4.0), ("long", 0.5)):
        report = pytest.TestReport(nodeid, ("", 0, ""), {}, "passed", None, "call", [])
        report.duration = seconds
        timings.pytest_runtest_logreport(report)
    timings.pytest_sessionfinish(cast(pytest.Session, SimpleNamespace(config=config)))
    assert cache.reads == 1
    assert cache.stored[CACHE_KEY] == {"long": 4.5, "gone": 1.0, "short": 0.25}


def _slow(seconds: float) -> pytest.Mark:
    return pytest.mark.slow(seconds=seconds).mark
