"""Events stored in partitions as the gateway's acceptance stores them, for the tests of what
comes after acceptance (routing, lanes, delivery) with several partitions; and a check that
every key a run wrote carries the hash tag of the partition it belongs to."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import redis

from incidents.store import keys
from incidents.store.events import microseconds, stored_tail

# What a tagged partition's key looks like: incidents:{p<n>}:<name> (or {p<n>.<k>}).
_TAGGED = re.compile(r"incidents:\{p(\d+)(?:\.\d+)?\}:(.*)", re.DOTALL)
# The names (after the prefix) of a partition's keys; on one Redis with one partition they
# have no tag, so with a tagged layout none may be found without one.
_PARTITION_NAMES = re.compile(
    r"(seq|incident-counter|outbox|incident-index|alert-index|closed-incidents|resolved-alerts"
    r"|delivery-buckets|sweep:.*|retention:removed|events:.*|route:lock|lanes:due"
    r"|lanes:leased|lanes:holders|lanes:tokens|lane:.*|dead|metrics:.*|event-ids:.*"
    r"|timeline:.*|incident:.*|alert:.*|deliveries:.*|sub:[^:]+:attempts|sub:[^:]+:channels)"
)
_INCIDENT_TAG = re.compile(r"\{([^{}]+)\}")


def accept_in_partitions(
    client: redis.Redis, layout: keys.Partitions, *events: dict[str, Any]
) -> list[int]:
    """Store ``events`` where the gateway stores them in a deployment of ``layout``: each in
    its incident's partition (``imincidentid``; without one, by its source and id), under
    that partition's next sequence, on the incident's timeline, with an entry in the
    partition's outbox. Their sequences, in order."""
    sequences = []
    for event in events:
        incident = event.get("imincidentid")
        space = (
            layout.of_incident(incident)
            if incident
            else layout.of_event(event["source"], event["id"])
        )
        sequence = layout.sequence(space, int(client.incr(space.SEQUENCE)))
        tail = stored_tail(event, microseconds(datetime.now(UTC)))
        pipe = client.pipeline(transaction=False)
        pipe.hset(space.event_hash(sequence), str(sequence), b"[%d" % sequence + tail)
        if incident:
            pipe.zadd(space.timeline(incident), {str(sequence): sequence})
        pipe.xadd(space.OUTBOX, {"seq": sequence})
        pipe.execute()
        sequences.append(sequence)
    return sequences


def misplaced_keys(client: redis.Redis, layout: keys.Partitions) -> list[str]:
    """The keys of the Redis that are not where ``layout`` puts them: a partition's key
    without its tag, a tag of no partition, or a key of an incident (its lanes, timeline,
    document) tagged for another partition than the incident's."""
    wrong = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        tagged = _TAGGED.fullmatch(key)
        if tagged is None:
            if _PARTITION_NAMES.fullmatch(key.removeprefix(keys.PREFIX)):
                wrong.append(key)  # a partition's key, untagged
            continue
        partition, rest = int(tagged.group(1)), tagged.group(2)
        if partition >= layout.count:
            wrong.append(key)
            continue
        incident = _INCIDENT_TAG.search(rest)
        named = incident.group(1) if incident is not None else "~"
        if not named.startswith("~") and layout.of_incident(named).partition != partition:
            wrong.append(key)
    return wrong
