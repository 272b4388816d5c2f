"""The arithmetic of ``bench/capacity.py --cluster``: Redis CPU per item split into the work
of an item's partition and of the global keys, and the ceiling for N primaries."""

from __future__ import annotations

import pytest
from bench.cluster_capacity import Split, shares, split


def test_the_split_comes_from_the_primaries_without_the_global_keys() -> None:
    """Two primaries holding a third of the items each at 20 us give 60 us per item of
    partition work; the third, at 35 us for its third, adds 15 us of global work."""
    cpu = {"a": 20.0, "b": 20.0, "g": 35.0}
    third = {"a": 1 / 3, "b": 1 / 3, "g": 1 / 3}
    assert split(cpu, third, "g") == Split(60.0, 15.0)


def test_uneven_shares_are_weighed() -> None:
    """A primary holding half the items at 30 us and one a quarter at 15 us: 60 us an item."""
    found = split({"a": 30.0, "b": 15.0, "g": 15.0}, {"a": 0.5, "b": 0.25, "g": 0.25}, "g")
    assert found == Split(60.0, 0.0)


def test_the_ceiling_is_the_busiest_primary_full() -> None:
    """With 60 us of partition work and 15 of global work, one primary carries 13,333 items
    a second, three 28,571 (35 us on the busiest), and no number passes 1 / 15 us."""
    found = Split(60.0, 15.0)
    assert found.ceiling(1) == 13_333
    assert found.ceiling(3) == 28_571
    assert found.ceiling(1000) < 1e6 / 15.0


def test_shares_are_of_what_was_stored_between_two_counts() -> None:
    """Shares count the events stored after the first count only."""
    assert shares({"a": 10, "b": 0}, {"a": 40, "b": 10}) == {"a": 0.75, "b": 0.25}


def test_a_split_needs_a_primary_without_the_global_keys() -> None:
    """With every item on the primary of the global keys, partition and global work cannot
    be told apart: an error saying so."""
    with pytest.raises(ValueError, match="without the global keys"):
        split({"g": 10.0, "a": 1.0}, {"g": 1.0, "a": 0.0}, "g")
