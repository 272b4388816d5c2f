"""The test order (tests/scheduling.py): the long tests head a pile each, one pile per xdist
worker, and the tests sharing a costly fixture stay together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pytest

from tests.scheduling import chunk_sizes, deal


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


def _slow(seconds: float) -> pytest.Mark:
    return pytest.mark.slow(seconds=seconds).mark
