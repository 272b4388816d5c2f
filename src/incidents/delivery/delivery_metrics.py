"""Delivery metrics per subscription, shared by every worker: outcome counts and a latency
histogram of the attempts that made a request, kept in two Redis hashes and written with
each lane's completion (``complete.lua``, in the same step as the attempt log), read at
scrape time by ``GET /metrics``. Labels are the subscription id and the outcome, so the
series are bounded by the number of subscriptions; a deleted subscription's series go at
the next scrape.

    incidents_deliveries_total{subscription, outcome}   counter
    incidents_delivery_seconds{subscription}            histogram (le="..." buckets)
    incidents_subscription_disabled{subscription}       gauge, 1 while disabled
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import ExecAbortError, ResponseError

from incidents.delivery.attempt_log import AttemptEntry
from incidents.store import keys
from incidents.store.redis import is_full

# Seconds: a webhook answers in milliseconds, a ticketing system in a second or more.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SEP = "|"  # between the subscription id and the outcome or bucket in a hash field


def increments(log: Sequence[AttemptEntry]) -> tuple[list[str], list[str], list[str]]:
    """What a lane's attempt log adds: outcome count fields, latency bucket fields (one
    per attempt; buckets are summed when read) and [field, seconds, ...] for the sums."""
    outcomes: list[str] = []
    buckets: list[str] = []
    sums: dict[str, float] = {}
    for entry in log:
        sub = entry.subscription
        outcomes.append(f"{sub}{_SEP}{entry.outcome}")
        sent = entry.sent
        if sent is None or sent.request is None:
            continue  # no request was made: nothing took time
        seconds = sent.latency_ms / 1000
        index = bisect_left(BUCKETS, seconds)
        buckets.append(f"{sub}{_SEP}{BUCKETS[index] if index < len(BUCKETS) else '+Inf'}")
        sums[sub] = sums.get(sub, 0.0) + seconds
    flat_sums = [x for sub, total in sums.items() for x in (f"{sub}{_SEP}sum", f"{total:.6f}")]
    return outcomes, buckets, flat_sums


def payload(log: Sequence[AttemptEntry], space: keys.Keyspace = keys.SINGLE) -> dict[str, object]:
    """The part of ``complete.lua``'s argument that counts the lane's attempts (in the lane's
    partition ``space``)."""
    outcomes, buckets, sums = increments(log)
    return {
        "metric_outcomes_key": space.METRICS_DELIVERIES,
        "metric_outcomes": outcomes,
        "metric_latency_key": space.METRICS_DELIVERY_SECONDS,
        "metric_buckets": buckets,
        "metric_sums": sums,
    }


def _split(field: bytes) -> tuple[str, str]:
    sub, _, rest = field.decode().partition(_SEP)
    return sub, rest


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    outcomes: Mapping[bytes, bytes],
    latency: Mapping[bytes, bytes],
    statuses: Mapping[str, str],
) -> tuple[list[str], list[bytes], list[bytes]]:
    """The exposition lines for the subscriptions in ``statuses`` (id -> status), and the
    outcome and latency fields of subscriptions that no longer exist (to delete)."""
    lines = [
        "# HELP incidents_deliveries_total Delivery attempts (and withholdings, dead letters) "
        "by subscription and outcome.",
        "# TYPE incidents_deliveries_total counter",
    ]
    gone_outcomes: list[bytes] = []
    for field, n in sorted(outcomes.items()):
        sub, outcome = _split(field)
        if sub not in statuses:
            gone_outcomes.append(field)
            continue
        lines.append(
            f'incidents_deliveries_total{{subscription="{_label(sub)}",'
            f'outcome="{_label(outcome)}"}} {int(n)}'
        )
    lines += [
        "# HELP incidents_delivery_seconds Time from sending an attempt's request to its "
        "response (or failure), by subscription.",
        "# TYPE incidents_delivery_seconds histogram",
    ]
    gone_latency: list[bytes] = []
    per_sub: dict[str, dict[str, float]] = {}
    for field, n in latency.items():
        sub, bound = _split(field)
        if sub not in statuses:
            gone_latency.append(field)
            continue
        per_sub.setdefault(sub, {})[bound] = float(n)
    for sub in sorted(per_sub):
        found, name = per_sub[sub], _label(sub)
        total = 0.0
        for upper in BUCKETS:
            total += found.get(str(upper), 0.0)
            lines.append(
                f'incidents_delivery_seconds_bucket{{subscription="{name}",le="{upper}"}} '
                f"{int(total)}"
            )
        total += found.get("+Inf", 0.0)
        lines.append(
            f'incidents_delivery_seconds_bucket{{subscription="{name}",le="+Inf"}} {int(total)}'
        )
        lines.append(
            f'incidents_delivery_seconds_sum{{subscription="{name}"}} {found.get("sum", 0.0):.6f}'
        )
        lines.append(f'incidents_delivery_seconds_count{{subscription="{name}"}} {int(total)}')
    lines += [
        "# HELP incidents_subscription_disabled 1 while the subscription is disabled (a 410, "
        "or failing for INCIDENTS_DISABLE_AFTER), else 0.",
        "# TYPE incidents_subscription_disabled gauge",
    ]
    for sub, status in sorted(statuses.items()):
        disabled = 1 if status == "disabled" else 0
        lines.append(f'incidents_subscription_disabled{{subscription="{_label(sub)}"}} {disabled}')
    return lines, gone_outcomes, gone_latency


async def _counts(
    redis: aioredis.Redis, transaction: bool
) -> tuple[set[bytes], dict[bytes, bytes], dict[bytes, bytes]]:
    """The subscriptions and the two count hashes (of a one-partition deployment)."""
    pipe = redis.pipeline(transaction=transaction)
    pipe.smembers(keys.SUBSCRIPTIONS)
    pipe.hgetall(keys.METRICS_DELIVERIES)
    pipe.hgetall(keys.METRICS_DELIVERY_SECONDS)
    members, outcomes, latency = await pipe.execute()
    return members, outcomes, latency


async def _partitioned_counts(
    redis: aioredis.Redis, layout: keys.Partitions
) -> tuple[dict[bytes, bytes], dict[bytes, bytes], set[bytes]]:
    """The two count hashes summed over the partitions, then the subscriptions (read after
    the counts, so a subscription deleted meanwhile is not one whose counts are kept)."""
    outcomes: dict[bytes, float] = {}
    latency: dict[bytes, float] = {}
    pipe = redis.pipeline(transaction=False)
    for space in layout:
        pipe.hgetall(space.METRICS_DELIVERIES)
        pipe.hgetall(space.METRICS_DELIVERY_SECONDS)
    found = await pipe.execute()
    for i, rows in enumerate(found):
        into = outcomes if i % 2 == 0 else latency
        for name, n in rows.items():
            into[name] = into.get(name, 0.0) + float(n)
    members = cast(set[bytes], await redis.smembers(keys.SUBSCRIPTIONS))
    return _texts(outcomes), _texts(latency), members


def _texts(summed: Mapping[bytes, float]) -> dict[bytes, bytes]:
    return {k: (repr(v) if v % 1 else str(int(v))).encode() for k, v in summed.items()}


async def read(redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> list[str]:
    """The per-subscription delivery lines: the subscriptions and their counts read in one
    step (so a count is never taken for a deleted subscription's), then their statuses, and
    the series of deleted subscriptions dropped. With several partitions, each partition's
    counts summed."""
    tidy = True  # drop the series of deleted subscriptions
    if len(layout) > 1 or layout.tagged:
        outcomes, latency, members = await _partitioned_counts(redis, layout)
    else:
        try:
            members, outcomes, latency = await _counts(redis, transaction=True)
        except ResponseError as exc:
            # A full Redis refuses every command queued in a MULTI, reads too: read them
            # apart, and drop nothing this time (a subscription made between the reads
            # would look gone).
            if not (is_full(exc) or isinstance(exc, ExecAbortError)):
                raise
            tidy = False
            members, outcomes, latency = await _counts(redis, transaction=False)
    ids = sorted(s.decode() for s in members)
    pipe = redis.pipeline(transaction=False)
    for sub in ids:
        pipe.hget(keys.subscription(sub), "status")
    raw = await pipe.execute() if ids else []
    statuses = {sub: (s.decode() if s else "active") for sub, s in zip(ids, raw, strict=True)}
    lines, gone_outcomes, gone_latency = render(outcomes, latency, statuses)
    if tidy and (gone_outcomes or gone_latency):
        pipe = redis.pipeline(transaction=False)
        for space in layout:
            if gone_outcomes:
                pipe.hdel(space.METRICS_DELIVERIES, *gone_outcomes)
            if gone_latency:
                pipe.hdel(space.METRICS_DELIVERY_SECONDS, *gone_latency)
        await pipe.execute()
    return lines
