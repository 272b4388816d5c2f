"""Positions over several partitions, as pure logic: a stream's marks (the SSE ids), the next
sequence a partition can hold, listing cursors, and where an event is stored."""

from __future__ import annotations

import pytest

from incidents.errors import InvalidRequest
from incidents.model.cloudevent import CloudEvent
from incidents.store.events import EventStore
from incidents.store.index_pages import PageRequest, Position, Positions
from incidents.store.keys import partitions
from incidents.stream.marks import Mark, next_sequence
from tests.support import event

THREE = partitions(3, True)
ONE = partitions(1, False)


def test_a_mark_moves_on_per_partition_and_reads_back_from_its_id() -> None:
    """A mark passes each partition's sequences on their own, and its id parses back."""
    mark = Mark.start(3)
    for sequence in (3, 4, 9, 5):  # partitions 0, 1, 0, 2
        mark = mark.after(THREE, sequence)
    assert mark.sequences == (9, 4, 5)
    assert mark.after(THREE, 6) == mark  # partition 0 is already past 6
    assert mark.passed(THREE, 6) and mark.passed(THREE, 4)
    assert not mark.passed(THREE, 12) and not mark.passed(THREE, 7)
    assert Mark.parse(mark.encode(), 3) == mark and mark.encode() == "9.4.5"
    assert mark.joined(Mark((3, 10, 2))).sequences == (9, 10, 5)


def test_one_partition_keeps_sequences_as_ids() -> None:
    """With one partition the id is the sequence itself, and a bare number is what parses."""
    assert Mark((42,)).encode() == "42"
    assert Mark.parse(" 42 ", 1) == Mark((42,))
    for bad in ("", "4.2", "-1", "²", "1" * 30):
        with pytest.raises(ValueError, match="gateway sequence"):
            Mark.parse(bad, 1)
    with pytest.raises(ValueError, match="3 whole numbers"):
        Mark.parse("12", 3)


def test_the_next_sequence_of_a_partition_is_its_own() -> None:
    """After any sequence, the next one a partition can hold is of that partition, above it,
    and no sequence of that partition lies between."""
    for layout in (ONE, THREE):
        for space in layout:
            own = [layout.sequence(space, c) for c in range(1, 120)]
            for after in range(0, 100):
                expected = min(s for s in own if s > after)
                assert next_sequence(layout, space, after) == expected
    assert next_sequence(ONE, ONE.spaces[0], 41) == 42


def test_listing_cursors_of_one_layout_are_refused_by_the_other() -> None:
    """A composite cursor reads back as it was written; a one-partition cursor is still a
    Position, and a composite one is kept aside for the walk that knows the count."""
    positions = Positions((Position(), Position(12.5, 2), Position(3.0, 1)))
    assert Positions.decode(positions.encode(), 3) == positions
    with pytest.raises(InvalidRequest):
        Positions.decode(positions.encode(), 2)
    asked = PageRequest.after(10, positions.encode())
    assert asked.merged == positions.encode() and asked.start == Position()
    single = Position(7.0, 1).encode()
    assert PageRequest.after(10, single).start == Position(7.0, 1)
    with pytest.raises(InvalidRequest):
        Positions.decode(single, 3)


def test_an_event_is_stored_where_what_it_carries_says() -> None:
    """An event naming an incident goes to the incident's partition, an alert event to its
    alert's, any other to that of its (source, id)."""
    store = EventStore.__new__(EventStore)
    store.layout = THREE
    note = CloudEvent.from_dict(event("im.incident.note", imincidentid="INC-5"))
    assert store.partition_of(note) is THREE.of_incident("INC-5") is THREE.spaces[1]
    raw = event("im.alert.trigger", imcorrelationkey="disk", imtenant="t")
    assert store.partition_of(CloudEvent.from_dict(raw)) is THREE.of_alert("t", "disk")
    bare = CloudEvent.from_dict(event())
    assert store.partition_of(bare) is THREE.of_event(bare.source, bare.id)
