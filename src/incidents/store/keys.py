"""Every Redis key name the gateway uses, in one place."""

from __future__ import annotations

import zlib

PREFIX = "incidents:"

SEQUENCE = PREFIX + "seq"
INCIDENT_COUNTER = PREFIX + "incident-counter"
OUTBOX = PREFIX + "outbox"
INCIDENT_INDEX = PREFIX + "incident-index"
ALERT_INDEX = PREFIX + "alert-index"
# Never created: ``SET <it> <value> XX`` is a write that changes nothing, refused only when Redis
# is full (see store/redis_memory.py).
WRITE_PROBE = PREFIX + "write-probe"

# Retention (retention/sweeper.py): time-ordered indexes of what falls due, and the sweep.
CLOSED_INCIDENTS = PREFIX + "closed-incidents"  # zset incident id -> unix time it was closed
RESOLVED_ALERTS = PREFIX + "resolved-alerts"  # zset alert key -> unix time it was resolved
# Delivery records by their event's sequence, in buckets of DELIVERY_BUCKET sequences: a hash
# delivery id -> record each (small, so Redis keeps it compact), and a zset of the buckets
# that hold any (bucket number -> bucket number), which retention walks.
DELIVERY_BUCKET = 32
DELIVERY_BUCKETS = PREFIX + "delivery-buckets"
SWEEP_LOCK = PREFIX + "sweep:lock"  # the sweeper's lease: one worker sweeps at a time
SWEPT_UP_TO = PREFIX + "sweep:events"  # the last sequence whose retention has been applied
RETENTION_REMOVED = PREFIX + "retention:removed"  # hash kind -> how many the sweeper removed


# Stored events, in hashes of EVENT_BUCKET consecutive sequences each (field: the sequence),
# rather than a key each: a key of its own costs an event about 60 bytes more.
EVENT_BUCKET = 64
EVENTS_PREFIX = PREFIX + "events:"


def events(bucket: int) -> str:
    """Hash sequence -> stored event (``store.events``), for the sequences ``bucket *
    EVENT_BUCKET`` up to the next bucket."""
    return f"{EVENTS_PREFIX}{bucket}"


def event_bucket(sequence: int) -> int:
    return sequence // EVENT_BUCKET


def event_hash(sequence: int) -> str:
    """The hash that holds the event of ``sequence`` (its field: the sequence)."""
    return events(event_bucket(sequence))


# The id index, which is the (source, id) dedup check too: hash CloudEvents id -> the stored
# events with that id (``store.event_index``), spread over EVENT_ID_BUCKETS hashes by a
# checksum of the id, so that small buckets stay compact in Redis.
EVENT_ID_BUCKETS = 1024


def event_ids(event_id: str) -> str:
    """The id index bucket that holds the events with this CloudEvents id."""
    bucket = zlib.crc32(event_id.encode("utf-8", "surrogatepass")) % EVENT_ID_BUCKETS
    return f"{PREFIX}event-ids:{bucket}"


def incident_tag(incident_id: str) -> str:
    """The hash tag every key of one incident carries (its timeline, its document, its
    external references, its delivery lanes), so that a Redis split by incident keeps them
    together: a cluster hashes only the part between the first ``{`` and the next ``}``."""
    return "{" + incident_id + "}"


def timeline(incident_id: str) -> str:
    return f"{PREFIX}timeline:{incident_tag(incident_id)}"


def incident(incident_id: str) -> str:
    return f"{PREFIX}incident:{incident_tag(incident_id)}"


def alert(tenant: str, correlation_key: str) -> str:
    # Length-prefixing the tenant keeps ("a:b", "c") and ("a", "b:c") apart.
    return f"{PREFIX}alert:{len(tenant)}:{tenant}{correlation_key}"


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
ROUTE_LOCK = PREFIX + "route:lock"

LANES_DUE = PREFIX + "lanes:due"  # zset lane key -> unix time it may be worked
LANES_LEASED = PREFIX + "lanes:leased"  # zset lane key -> unix time its lease ends
LANE_HOLDERS = PREFIX + "lanes:holders"  # hash lane key -> token of its current lease
LANE_TOKENS = PREFIX + "lanes:tokens"  # counter the lease tokens come from
LANE_PREFIX = PREFIX + "lane:"
# A stream with one entry each time queueing makes a lane due (and when the routing lease is
# given up): idle workers block reading it through one consumer group, so each entry wakes
# one worker. Only its newest entries matter.
LANES_WAKE = PREFIX + "lanes:wake"
LANES_WAKE_GROUP = "wakers"
DEAD_LETTERS = PREFIX + "dead"  # zset delivery id -> unix time it died
# Delivery metrics (``delivery.delivery_metrics``): hash "<subscription>|<outcome>" -> count,
# and hash "<subscription>|<bucket>" -> count plus "<subscription>|sum" -> seconds.
METRICS_DELIVERIES = PREFIX + "metrics:deliveries"
METRICS_DELIVERY_SECONDS = PREFIX + "metrics:delivery-seconds"


def subscription(sub_id: str) -> str:
    return f"{PREFIX}sub:{sub_id}"


def owned_by(owner: str) -> str:
    return f"{PREFIX}subs:owner:{owner}"


def route_exact(event_type: str) -> str:
    return f"{PREFIX}route:type:{event_type}"


def route_prefix(prefix: str) -> str:
    return f"{PREFIX}route:prefix:{prefix}"


def incident_refs(incident_id: str) -> str:
    """Hash ``<channel>:<subscription>`` -> the incident's record in that system (written with
    the channel state; shown in the incident's ``external_refs``)."""
    return f"{PREFIX}incident:{incident_tag(incident_id)}:refs"


def channel_state(sub_id: str) -> str:
    """Hash incident id -> the channel's state for it (JSON: the external record id, ...)."""
    return f"{PREFIX}sub:{sub_id}:channels"


def attempts(sub_id: str) -> str:
    return f"{PREFIX}sub:{sub_id}:attempts"


def lane(sub_id: str, incident: str) -> str:
    return f"{LANE_PREFIX}{sub_id}:{incident_tag(incident)}"


def deliveries(bucket: int) -> str:
    """Hash delivery id -> its record (``Delivery.encoded``), for the events of sequences
    ``bucket * DELIVERY_BUCKET`` up to the next bucket."""
    return f"{PREFIX}deliveries:{bucket}"


def rate_window(sub_id: str, window: int) -> str:
    return f"{PREFIX}rate:{sub_id}:{window}"


def paused(sub_id: str) -> str:
    """Unix time until which a sink asked (Retry-After) that nothing be sent to it."""
    return f"{PREFIX}sub:{sub_id}:paused"


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
    return f"{PREFIX}sync:{sub_id}:seen"


def sync_records(sub_id: str) -> str:
    """Hash the system's own record id -> incident id (what inbound webhooks name)."""
    return f"{PREFIX}sync:{sub_id}:records"


def ended_session(session_id: str) -> str:
    """Set while a signed-out console session's cookie has not expired yet (it is refused)."""
    return f"{PREFIX}console:ended:{session_id}"
