"""Every Redis key name the gateway uses, in one place.

Two kinds of keys:

- A **partition's keys** (:class:`Keyspace`): what one event's acceptance, routing, delivery
  and retention touch together (the sequence, the outbox, stored events, the id index,
  incidents, timelines, alerts, lanes, delivery records, ...). With ``INCIDENTS_PARTITIONS=1``
  on one Redis they are today's names (``incidents:seq``, ...), byte for byte; with more
  partitions, or on a Redis Cluster, partition ``n``'s keys all begin ``incidents:{<tag>}:``,
  one hash tag, so each script runs on one slot and a cluster spreads the partitions over its
  primaries (the tag is ``p<n>``, or ``p<n>.<k>`` where that puts partition n's slot in the
  n-th of equal ranges of slots: :func:`partition_tag`). :class:`Partitions` says which
  partition an incident, an alert or an event belongs to.
- **Global keys** (the module's constants below that no keyspace holds: subscriptions,
  principals, silences, the routing index, ...): one of each per deployment. On a Redis
  Cluster they share the hash tag ``{g}`` (``incidents:{g}:subs``), so the few scripts and
  transactions that touch several of them stay on one slot: :func:`use_cluster_names`.
"""

from __future__ import annotations

import binascii
import functools
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "incidents:"

# Never created: ``SET <it> <value> XX`` is a write that changes nothing, refused only when Redis
# is full (see store/redis_memory.py).
WRITE_PROBE = PREFIX + "write-probe"

# Delivery records by their event's sequence, in buckets of DELIVERY_BUCKET sequences (of a
# partition's own: Keyspace.delivery_bucket_size): a hash delivery id -> record each (small,
# so Redis keeps it compact), and a zset of the buckets that hold any, which retention walks.
DELIVERY_BUCKET = 32
# Stored events, in hashes of EVENT_BUCKET consecutive sequences each (field: the sequence),
# rather than a key each: a key of its own costs an event about 60 bytes more.
EVENT_BUCKET = 64
# The id index, which is the (source, id) dedup check too: hash CloudEvents id -> the stored
# events with that id (``store.event_index``), spread over EVENT_ID_BUCKETS hashes by a
# checksum of the id, so that small buckets stay compact in Redis.
EVENT_ID_BUCKETS = 1024


def incident_tag(incident_id: str) -> str:
    """The hash tag every key of one incident carries (its timeline, its document, its
    external references, its delivery lanes), so that a Redis split by incident keeps them
    together: a cluster hashes only the part between the first ``{`` and the next ``}``."""
    return "{" + incident_id + "}"


# Delivery: subscriptions, the routing index, lanes, delivery records, channel state.
SUBSCRIPTIONS = PREFIX + "subs"  # set of every subscription id
SUBSCRIPTIONS_SEALED = PREFIX + "subs:sealed"  # ids of subscriptions holding a sealed secret
SUBSCRIPTIONS_VERSION = PREFIX + "subs:version"  # bumped on every change; workers' caches key on it
ROUTE_ANY_TYPE = PREFIX + "route:any"  # ids of subscriptions without a types list
ROUTE_PREFIXES = PREFIX + "route:prefixes"  # set of the type prefixes in use

SILENCES = PREFIX + "silences"  # zset silence id -> unix time it ends
SILENCES_VERSION = PREFIX + "silences:version"  # bumped on every change; workers' caches key on it
SILENCE_PREFIX = PREFIX + "silence:"


def silence(silence_id: str) -> str:
    """The silence's JSON (``incidents.silences``)."""
    return SILENCE_PREFIX + silence_id


ROUTER_GROUP = "routers"
ROUTER_CONSUMER = "router"  # one router runs at a time (ROUTE_LOCK), so one consumer name

# A stream with one entry each time queueing makes a lane due (and when the routing lease is
# given up): idle workers block reading it through one consumer group, so each entry wakes
# one worker. Only its newest entries matter.
LANES_WAKE = PREFIX + "lanes:wake"
LANES_WAKE_GROUP = "wakers"


def subscription(sub_id: str) -> str:
    return f"{GLOBAL_PREFIX}sub:{sub_id}"


def owned_by(owner: str) -> str:
    return f"{GLOBAL_PREFIX}subs:owner:{owner}"


def route_exact(event_type: str) -> str:
    return f"{GLOBAL_PREFIX}route:type:{event_type}"


def route_prefix(prefix: str) -> str:
    return f"{GLOBAL_PREFIX}route:prefix:{prefix}"


def rate_window(sub_id: str, window: int) -> str:
    return f"{GLOBAL_PREFIX}rate:{sub_id}:{window}"


def paused(sub_id: str) -> str:
    """Unix time until which a sink asked (Retry-After) that nothing be sent to it."""
    return f"{GLOBAL_PREFIX}sub:{sub_id}:paused"


# Principals (policy/principals.py): one hash each, a token-digest -> id key, name -> id.
PRINCIPALS = PREFIX + "principals"  # set of every principal id
PRINCIPAL_NAMES = PREFIX + "principal-names"  # hash name -> id
PRINCIPAL_PREFIX = PREFIX + "principal:"
TOKEN_PREFIX = PREFIX + "token:"


def principal_key(principal_id: str) -> str:
    return PRINCIPAL_PREFIX + principal_id


def token_key(digest: str) -> str:
    return TOKEN_PREFIX + digest


def sync_seen(sub_id: str) -> str:
    """Hash incident id -> JSON of the values the subscription's system last sent inbound."""
    return f"{GLOBAL_PREFIX}sync:{sub_id}:seen"


def sync_records(sub_id: str) -> str:
    """Hash the system's own record id -> incident id (what inbound webhooks name)."""
    return f"{GLOBAL_PREFIX}sync:{sub_id}:records"


def ended_session(session_id: str) -> str:
    """Set while a signed-out console session's cookie has not expired yet (it is refused)."""
    return f"{GLOBAL_PREFIX}console:ended:{session_id}"


# The workers that route now (delivery/routing_share.py): zset worker id -> unix time its
# announcement ends. Each takes its share of the partitions' routing leases.
ROUTERS = PREFIX + "routers"

# The number of partitions a deployment's data was created with (INCIDENTS_PARTITIONS): set
# on first start, and a gateway started with another number refuses to run against it.
PARTITIONS = PREFIX + "partitions"

# What a partition holds (Keyspace): each name, after the partition's prefix.
_PARTITION_NAMES = {
    "SEQUENCE": "seq",  # counter: the partition's events (Partitions.sequence)
    "INCIDENT_COUNTER": "incident-counter",  # counter: the INC-<n> it numbers
    "OUTBOX": "outbox",  # stream: one entry per accepted event, routed in order
    "INCIDENT_INDEX": "incident-index",
    "ALERT_INDEX": "alert-index",
    # Retention (retention/sweeper.py): time-ordered indexes of what falls due, and the sweep.
    "CLOSED_INCIDENTS": "closed-incidents",  # zset incident id -> unix time it was closed
    "RESOLVED_ALERTS": "resolved-alerts",  # zset alert key -> unix time it was resolved
    "DELIVERY_BUCKETS": "delivery-buckets",  # zset of the delivery buckets holding any
    "SWEEP_LOCK": "sweep:lock",  # the sweeper's lease: one worker sweeps it at a time
    "SWEPT_UP_TO": "sweep:events",  # the last sequence whose retention has been applied
    "RETENTION_REMOVED": "retention:removed",  # hash kind -> how many the sweeper removed
    "EVENTS_PREFIX": "events:",
    "ROUTE_LOCK": "route:lock",  # the routing lease of the partition's outbox
    "LANES_DUE": "lanes:due",  # zset lane key -> unix time it may be worked
    "LANES_LEASED": "lanes:leased",  # zset lane key -> unix time its lease ends
    "LANE_HOLDERS": "lanes:holders",  # hash lane key -> token of its current lease
    "LANE_TOKENS": "lanes:tokens",  # counter the lease tokens come from
    "LANE_PREFIX": "lane:",
    "DEAD_LETTERS": "dead",  # zset delivery id -> unix time it died
    # Delivery metrics (``delivery.delivery_metrics``): hash "<subscription>|<outcome>" ->
    # count, and hash "<subscription>|<bucket>" -> count plus "<subscription>|sum" -> seconds.
    "METRICS_DELIVERIES": "metrics:deliveries",
    "METRICS_DELIVERY_SECONDS": "metrics:delivery-seconds",
}


class Keyspace:
    """The keys of one partition: ``prefix`` followed by the names the module's constants and
    functions of the same names use (``incidents:`` for a one-partition deployment on one
    Redis, else ``incidents:{<tag>}:``, the tag of :func:`partition_tag`)."""

    SEQUENCE: str
    INCIDENT_COUNTER: str
    OUTBOX: str
    INCIDENT_INDEX: str
    ALERT_INDEX: str
    CLOSED_INCIDENTS: str
    RESOLVED_ALERTS: str
    DELIVERY_BUCKETS: str
    SWEEP_LOCK: str
    SWEPT_UP_TO: str
    RETENTION_REMOVED: str
    EVENTS_PREFIX: str
    ROUTE_LOCK: str
    LANES_DUE: str
    LANES_LEASED: str
    LANE_HOLDERS: str
    LANE_TOKENS: str
    LANE_PREFIX: str
    DEAD_LETTERS: str
    METRICS_DELIVERIES: str
    METRICS_DELIVERY_SECONDS: str

    def __init__(self, prefix: str = PREFIX, partition: int = 0, count: int = 1) -> None:
        self.prefix, self.partition, self.count = prefix, partition, count
        for name, suffix in _PARTITION_NAMES.items():
            setattr(self, name, prefix + suffix)
        # A partition's sequences are ``counter * count + partition`` (Partitions.sequence):
        # its buckets hold EVENT_BUCKET (DELIVERY_BUCKET) of its own consecutive sequences.
        self.event_bucket_size = EVENT_BUCKET * count
        self.delivery_bucket_size = DELIVERY_BUCKET * count

    def __repr__(self) -> str:
        return f"Keyspace({self.prefix!r}, {self.partition}, {self.count})"

    def events(self, bucket: int) -> str:
        """Hash sequence -> stored event (``store.events``), for one bucket of sequences."""
        return f"{self.EVENTS_PREFIX}{bucket}"

    def event_bucket(self, sequence: int) -> int:
        return sequence // self.event_bucket_size

    def event_hash(self, sequence: int) -> str:
        """The hash that holds the event of ``sequence`` (its field: the sequence)."""
        return self.events(self.event_bucket(sequence))

    def delivery_bucket(self, sequence: int) -> int:
        return sequence // self.delivery_bucket_size

    def event_ids(self, event_id: str) -> str:
        """The id index bucket that holds the events with this CloudEvents id."""
        bucket = zlib.crc32(event_id.encode("utf-8", "surrogatepass")) % EVENT_ID_BUCKETS
        return f"{self.prefix}event-ids:{bucket}"

    def timeline(self, incident_id: str) -> str:
        return f"{self.prefix}timeline:{incident_tag(incident_id)}"

    def incident(self, incident_id: str) -> str:
        return f"{self.prefix}incident:{incident_tag(incident_id)}"

    def incident_refs(self, incident_id: str) -> str:
        """Hash ``<channel>:<subscription>`` -> the incident's record in that system (written
        with the channel state; shown in the incident's ``external_refs``)."""
        return f"{self.prefix}incident:{incident_tag(incident_id)}:refs"

    def alert(self, tenant: str, correlation_key: str) -> str:
        # Length-prefixing the tenant keeps ("a:b", "c") and ("a", "b:c") apart.
        return f"{self.prefix}alert:{len(tenant)}:{tenant}{correlation_key}"

    def lane(self, sub_id: str, incident: str) -> str:
        return f"{self.LANE_PREFIX}{sub_id}:{incident_tag(incident)}"

    def deliveries(self, bucket: int) -> str:
        """Hash delivery id -> its record (``Delivery.encoded``), for one bucket of sequences."""
        return f"{self.prefix}deliveries:{bucket}"

    def attempts(self, sub_id: str) -> str:
        """The subscription's attempt log, for the deliveries of this partition."""
        return f"{self.prefix}sub:{sub_id}:attempts"

    def channel_state(self, sub_id: str) -> str:
        """Hash incident id -> the channel's state for it (JSON: the external record id, ...),
        for this partition's incidents."""
        return f"{self.prefix}sub:{sub_id}:channels"


SINGLE = Keyspace()  # the one partition of a one-partition deployment on one Redis

# The module's names for SINGLE's keys (readers that only ever see one partition, and tests).
SEQUENCE = SINGLE.SEQUENCE
INCIDENT_COUNTER = SINGLE.INCIDENT_COUNTER
OUTBOX = SINGLE.OUTBOX
INCIDENT_INDEX = SINGLE.INCIDENT_INDEX
ALERT_INDEX = SINGLE.ALERT_INDEX
CLOSED_INCIDENTS = SINGLE.CLOSED_INCIDENTS
RESOLVED_ALERTS = SINGLE.RESOLVED_ALERTS
DELIVERY_BUCKETS = SINGLE.DELIVERY_BUCKETS
SWEEP_LOCK = SINGLE.SWEEP_LOCK
SWEPT_UP_TO = SINGLE.SWEPT_UP_TO
RETENTION_REMOVED = SINGLE.RETENTION_REMOVED
EVENTS_PREFIX = SINGLE.EVENTS_PREFIX
ROUTE_LOCK = SINGLE.ROUTE_LOCK
LANES_DUE = SINGLE.LANES_DUE
LANES_LEASED = SINGLE.LANES_LEASED
LANE_HOLDERS = SINGLE.LANE_HOLDERS
LANE_TOKENS = SINGLE.LANE_TOKENS
LANE_PREFIX = SINGLE.LANE_PREFIX
DEAD_LETTERS = SINGLE.DEAD_LETTERS
METRICS_DELIVERIES = SINGLE.METRICS_DELIVERIES
METRICS_DELIVERY_SECONDS = SINGLE.METRICS_DELIVERY_SECONDS
events = SINGLE.events
event_bucket = SINGLE.event_bucket
event_hash = SINGLE.event_hash
event_ids = SINGLE.event_ids
timeline = SINGLE.timeline
incident = SINGLE.incident
incident_refs = SINGLE.incident_refs
alert = SINGLE.alert
lane = SINGLE.lane
deliveries = SINGLE.deliveries
attempts = SINGLE.attempts
channel_state = SINGLE.channel_state

_GATEWAY_NUMBER = re.compile(r"INC-([1-9][0-9]{0,17})")


def _checksum(*parts: str) -> int:
    text = "".join(f"{len(p)}:{p}" for p in parts)
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


CLUSTER_SLOTS = 16384


def cluster_slot(tag: str) -> int:
    """The Redis Cluster slot of keys with this hash tag (CRC-16/XMODEM, as Redis hashes)."""
    return binascii.crc_hqx(tag.encode(), 0) % CLUSTER_SLOTS


@functools.cache
def partition_tag(partition: int, count: int) -> str:
    """The hash tag of a partition's keys: ``p<n>``, or ``p<n>.<k>`` with the smallest ``k``
    that puts its slot in the ``n``-th of ``count`` equal ranges of slots. So the partitions
    lie evenly over the slots, and a cluster whose primaries serve equal ranges (as
    ``redis-cli --cluster create`` and ``--cluster rebalance`` make them) holds an equal share
    of them on each primary, give or take one."""
    low = partition * CLUSTER_SLOTS // count
    high = (partition + 1) * CLUSTER_SLOTS // count
    tag, k = f"p{partition}", 0
    while not low <= cluster_slot(tag) < high:
        tag, k = f"p{partition}.{k}", k + 1
    return tag


class Partitions:
    """A deployment's partitions (``INCIDENTS_PARTITIONS``) and which one holds what.

    - An incident, and every event that names it: by its id. An id the gateway assigns,
      ``INC-<n>``, is in partition ``(n - 1) % count`` (so the gateway picks numbers for a
      partition: :meth:`incident_number`); any other id by a checksum of it.
    - An alert, and the incident it declares: by its tenant and correlation key.
    - Any other event (a declaration whose id the gateway assigns): by its source and id.

    ``tagged``: each partition's keys carry its own hash tag (more than one partition, or a
    Redis Cluster, which needs the tag even for one)."""

    def __init__(self, count: int = 1, *, tagged: bool | None = None) -> None:
        if count < 1:
            raise ValueError("at least one partition")
        self.count = count
        self.tagged = count > 1 if tagged is None else tagged
        self.spaces = tuple(
            Keyspace(f"{PREFIX}{{{partition_tag(n, count)}}}:" if self.tagged else PREFIX, n, count)
            for n in range(count)
        )

    def __iter__(self) -> Iterator[Keyspace]:
        return iter(self.spaces)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Partitions({self.count}, tagged={self.tagged})"

    def of_incident(self, incident_id: str) -> Keyspace:
        if self.count == 1:
            return self.spaces[0]
        number = _GATEWAY_NUMBER.fullmatch(incident_id)
        if number is not None:
            return self.spaces[(int(number.group(1)) - 1) % self.count]
        return self.spaces[_checksum(incident_id) % self.count]

    def of_alert(self, tenant: str, correlation_key: str) -> Keyspace:
        if self.count == 1:
            return self.spaces[0]
        return self.spaces[_checksum(tenant, correlation_key) % self.count]

    def of_event(self, source: str, event_id: str) -> Keyspace:
        if self.count == 1:
            return self.spaces[0]
        return self.spaces[_checksum(source, event_id) % self.count]

    def of_stored(
        self,
        incident_id: str | None,
        tenant: str,
        correlation_key: str | None,
        source: str,
        event_id: str,
    ) -> Keyspace:
        """The partition an accepted event is stored in, from what it carries once accepted
        (an import into a deployment of another partition count uses it): the incident's if
        it names one (an alert's incident is always in the alert's partition), else the
        alert's, else its own by source and id."""
        if incident_id:
            return self.of_incident(incident_id)
        if correlation_key is not None:
            return self.of_alert(tenant, correlation_key)
        return self.of_event(source, event_id)

    def of_sequence(self, sequence: int) -> Keyspace:
        """The partition that stored the event of ``sequence``."""
        return self.spaces[sequence % self.count]

    def sequence(self, space: Keyspace, counter: int) -> int:
        """The gateway sequence of the ``counter``-th event ``space`` stores (its
        ``SEQUENCE``): one partition's are 1, 2, 3, ...; partition ``p`` of ``P`` stores
        ``counter * P + p``, so a sequence says its partition and no two partitions share one.
        Sequences grow within a partition; across partitions they are only roughly in order."""
        return counter * self.count + space.partition

    def incident_number(self, space: Keyspace, counter: int) -> int:
        """The ``n`` of ``INC-<n>`` for the ``counter``-th incident the gateway numbers in
        ``space`` (its ``INCIDENT_COUNTER``): one partition numbers 1, 2, 3, ...; partition
        ``p`` of ``P`` numbers ``p + 1``, ``p + 1 + P``, ..."""
        return (counter - 1) * self.count + space.partition + 1


@functools.cache
def partitions(count: int, tagged: bool) -> Partitions:
    """The one ``Partitions`` of each (count, tagged): a process shares its keyspaces."""
    return Partitions(count, tagged=tagged)


ONE = partitions(1, False)  # one partition on one Redis: today's names

# Global keys on a Redis Cluster: one hash tag for all (see the module's docstring).
CLUSTER_PREFIX = "incidents:{g}:"
_GLOBAL_NAMES = (
    "WRITE_PROBE",
    "SUBSCRIPTIONS",
    "SUBSCRIPTIONS_SEALED",
    "SUBSCRIPTIONS_VERSION",
    "ROUTE_ANY_TYPE",
    "ROUTE_PREFIXES",
    "SILENCES",
    "SILENCES_VERSION",
    "SILENCE_PREFIX",
    "LANES_WAKE",
    "PRINCIPALS",
    "PRINCIPAL_NAMES",
    "PRINCIPAL_PREFIX",
    "TOKEN_PREFIX",
    "PARTITIONS",
    "ROUTERS",
)
_PLAIN_GLOBALS = {name: globals()[name] for name in _GLOBAL_NAMES}


def _name_globals(prefix: str) -> None:
    names = globals()
    names["GLOBAL_PREFIX"] = prefix
    for name, plain in _PLAIN_GLOBALS.items():
        names[name] = prefix + plain.removeprefix(PREFIX)


GLOBAL_PREFIX = PREFIX  # what the global keys begin with (see use_cluster_names)


def use_cluster_names(cluster: bool) -> None:
    """Name the global keys for a Redis Cluster (``incidents:{g}:...``) or for one Redis
    (``incidents:...``). A process talks to one deployment: the commands call this once, as
    they connect, before any global key is named."""
    _name_globals(CLUSTER_PREFIX if cluster else PREFIX)


@contextmanager
def cluster_names(cluster: bool = True) -> Iterator[None]:
    """:func:`use_cluster_names` for a while (tests that run a gateway in process)."""
    before = GLOBAL_PREFIX
    use_cluster_names(cluster)
    try:
        yield
    finally:
        _name_globals(before)
