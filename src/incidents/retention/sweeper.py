"""The sweeper: removes what retention says is past its time, from time-ordered indexes,
a bounded amount per step, never what is still needed. It works one partition at a time
(``INCIDENTS_PARTITIONS``): each has its own cursor, indexes, floor and lease, and every
script and pipeline of a step stays on that partition's keys (one slot on a cluster). The
key names below are those of one partition on one Redis; partition ``n`` of several has the
same names under ``incidents:{<tag>}:`` (``keys.partition_tag``).

- Events, with their entries in the id index (their dedup keys), once older than
  ``INCIDENTS_RETENTION``. Sequences grow with acceptance time, so the sequence itself is the
  index: a cursor (``incidents:sweep:events``) walks them in order. An event on an incident's
  timeline is part of that incident and stays as long as it does; its dedup key goes.
- Delivery records (and so dead letters) of the events the cursor has passed, found through
  ``incidents:deliveries:<bucket>`` (delivery id -> sequence); attempt-log entries older than the
  retention, from the tail of each subscription's log.
- Closed incidents (document, timeline and its events, external references, channel state)
  once closed longer than ``INCIDENTS_INCIDENT_RETENTION`` (``incidents:closed-incidents``),
  and resolved alerts as long after their resolve (``incidents:resolved-alerts``).
- Outbox entries older than the retention (the stream is trimmed by length elsewhere).

Nothing at or above the delivery floor (``retention.needed``) is touched: events not routed
yet, events a lane still holds, and what references them. With an archive, what is removed
is appended there first; if that fails nothing is removed (``ArchiveError``).

One worker sweeps a partition at a time, holding its ``incidents:sweep:lock``; each worker
process runs a loop that tries every ``SWEEP_EVERY`` seconds, taking the lease of each
partition nobody holds, so what is due goes within seconds and several workers share the
partitions.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import cast

import redis

from incidents.archive.daily import Archive, ArchiveError
from incidents.retention.document_removal import DocumentRemoval
from incidents.retention.event_removal import EventRemoval
from incidents.retention.needed import lowest_in_lanes, routing_frontier
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.scripts import load_script

log = logging.getLogger("incidents.retention")

KINDS = ("event", "dedup", "delivery", "dead_letter", "attempt", "incident", "alert", "stream")
SWEEP_EVERY = 5.0  # seconds between two rounds of a worker's loop (at most 10 s is promised)
ROUND_SECONDS = 2.0  # a round stops stepping after this long (the rest waits for the next)
LEASE_MS = 30_000


def sweeping(
    settings: Settings,
) -> Callable[[redis.Redis, Callable[[], float]], Callable[[threading.Event], None]]:
    """What a worker process runs beside its jobs: a sweeper on the worker's Redis client and
    clock, archiving when INCIDENTS_ARCHIVE_DIR is set."""
    archive = Archive(settings.archive_dir) if settings.archive_dir is not None else None

    def build(client: redis.Redis, clock: Callable[[], float]) -> Callable[[threading.Event], None]:
        return Sweeper(client, settings, clock, archive).run

    return build


class Sweeper:
    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        clock: Callable[[], float],
        archive: Archive | None = None,
    ) -> None:
        self.client = client
        self.retention = settings.retention.seconds
        self.incident_retention = settings.incident_retention.seconds
        self.clock = clock
        self.archive = archive
        self.layout = settings.layout
        self.events = EventRemoval(client, archive, self.layout)
        self.documents = DocumentRemoval(client, archive, self.layout)
        self._renew = client.register_script(load_script("lease"))
        self._unlock = client.register_script(load_script("unlock"))

    def sweep(self, seconds: float = ROUND_SECONDS) -> Counter[str] | None:
        """Sweep each partition whose lease no other worker holds, stepping until nothing
        more is due there or its share of ``seconds`` passes; None when other workers hold
        every partition's lease. Raises ArchiveError (nothing of that step removed)."""
        total: Counter[str] = Counter()
        took = False
        for space in self.layout:
            removed = self.sweep_partition(space, seconds / len(self.layout))
            if removed is not None:
                took = True
                total.update(removed)
        return total if took else None

    def sweep_partition(self, space: keys.Keyspace, seconds: float) -> Counter[str] | None:
        """Step ``space`` until nothing more is due or ``seconds`` pass; None when another
        worker holds its lease."""
        token = secrets.token_hex(8)
        if not self.client.set(space.SWEEP_LOCK, token, nx=True, px=LEASE_MS):
            return None
        total: Counter[str] = Counter()
        try:
            stop = time.monotonic() + seconds
            while True:
                removed = self.step_partition(space)
                total.update(removed)
                if not removed or time.monotonic() > stop:
                    break
                if not self._renew(keys=[space.SWEEP_LOCK], args=[token, LEASE_MS]):
                    break  # the lease ran out (a long stall): another worker sweeps
        finally:
            self._unlock(keys=[space.SWEEP_LOCK], args=[token])
        return total

    def run(self, stop: threading.Event) -> None:
        """Sweep every ``SWEEP_EVERY`` seconds until ``stop``, riding out Redis outages and
        archive failures (logged; nothing is removed until the archive takes it)."""
        failing = ""
        while not stop.wait(SWEEP_EVERY):
            try:
                self.sweep()
            except (redis.exceptions.RedisError, OSError, ArchiveError) as exc:
                if str(exc) != failing:
                    log.error("retention: nothing removed this round: %s", exc)
                failing = str(exc)
                continue
            except Exception:  # a bug must not end retention for good: next round tries again
                log.exception("retention: the sweep failed; trying again next round")
                continue
            if failing:
                log.warning("retention: sweeping again")
                failing = ""

    def step(self) -> Counter[str]:
        """One bounded step of each kind in every partition (no lease taken); what it
        removed, by kind."""
        removed: Counter[str] = Counter()
        for space in self.layout:
            removed.update(self.step_partition(space))
        return removed

    def step_partition(self, space: keys.Keyspace) -> Counter[str]:
        """One bounded step of each kind in ``space``; what it removed, by kind (also
        counted in the partition's ``retention:removed`` for
        ``incidents_retention_removed_total``: ``retention.counts``)."""
        now = self.clock()
        cutoff, closed_cutoff = now - self.retention, now - self.incident_retention
        counter = int(cast(bytes | None, self.client.get(space.SEQUENCE)) or 0)
        last = self.layout.sequence(space, counter)  # the partition's highest sequence
        frontier = routing_frontier(self.client, space)
        floor = last + 1
        for needed in (frontier.sequence, lowest_in_lanes(self.client, space)):
            if needed is not None:
                floor = min(floor, needed)
        removed: Counter[str] = Counter()
        self.events.events(space, cutoff, min(last, floor - 1), removed)
        self.events.deliveries(space, removed)
        self.events.attempts(space, cutoff, removed)
        self.documents.incidents(space, closed_cutoff, floor, removed)
        self.documents.alerts(space, closed_cutoff, removed)
        self.events.stream(space, cutoff, frontier, removed)
        removed = +removed  # only what was removed
        if removed:
            with self.client.pipeline(transaction=False) as pipe:
                for kind, n in removed.items():
                    pipe.hincrby(space.RETENTION_REMOVED, kind, n)
                pipe.execute()
        return removed
