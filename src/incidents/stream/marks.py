"""Where a client's event stream stands: the ``id`` of each message, which it sends back as
``Last-Event-ID`` to resume.

With one partition that is the gateway sequence of the last event sent, as it always was.
With several (``INCIDENTS_PARTITIONS``), sequences grow within a partition only, so the id is
the last sequence of each partition, joined by dots (``"30.16.0"``: 0 for none yet); clients
treat it as opaque and send it back as they got it.
"""

from __future__ import annotations

from dataclasses import dataclass

from incidents.store import keys

MAX_SEQUENCE = 2**63 - 1


@dataclass(frozen=True)
class Mark:
    """The last sequence passed in each partition, in partition order."""

    sequences: tuple[int, ...]

    @classmethod
    def start(cls, count: int) -> Mark:
        return cls((0,) * count)

    @classmethod
    def parse(cls, text: str, count: int) -> Mark:
        """The mark ``text`` (an id this gateway sent) names; ValueError if it names none."""
        parts = text.strip().split(".")
        if len(parts) != count or not all(_whole(p) and int(p) <= MAX_SEQUENCE for p in parts):
            if count == 1:
                raise ValueError("not a gateway sequence (a whole number from 0)")
            raise ValueError(
                f"not a stream position of this gateway ({count} whole numbers joined by dots,"
                " as a message's id gave it)"
            )
        return cls(tuple(int(p) for p in parts))

    def encode(self) -> str:
        return ".".join(str(s) for s in self.sequences)

    def passed(self, layout: keys.Partitions, sequence: int) -> bool:
        """Whether the event of ``sequence`` is at or before this mark."""
        return sequence <= self.sequences[layout.of_sequence(sequence).partition]

    def after(self, layout: keys.Partitions, sequence: int) -> Mark:
        """This mark moved on past the event of ``sequence``."""
        p = layout.of_sequence(sequence).partition
        if sequence <= self.sequences[p]:
            return self
        return Mark((*self.sequences[:p], sequence, *self.sequences[p + 1 :]))

    def joined(self, other: Mark) -> Mark:
        """The later of the two marks in each partition."""
        return Mark(tuple(max(a, b) for a, b in zip(self.sequences, other.sequences, strict=True)))


def next_sequence(layout: keys.Partitions, space: keys.Keyspace, after: int) -> int:
    """The first sequence ``space`` can hold after ``after`` (its sequences are
    ``counter * P + p``, counter from 1)."""
    count, p = layout.count, space.partition
    counter = max((after - p) // count + 1, 1)
    return counter * count + p


def _whole(text: str) -> bool:
    return text.isascii() and text.isdigit()
