"""Settings, read from the environment (every setting also has a CLI flag).

The body of :class:`Settings` is the one table of settings: each field is declared with
:func:`setting` (its environment variable, parser, default and help). ``Settings.from_env``,
the CLI flags and the README's settings table (``incidents settings --markdown``) all come
from :data:`SETTINGS`, the tuple of :class:`Setting` entries read off that table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from incidents.store.keys import Partitions

T = TypeVar("T")
Parser = Callable[[str, str], T]  # (variable name, raw value) -> value; raises SettingsError

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# The schemas and policies that ship inside the package: used when no setting names a folder
# and the working directory has none of that name, so an installed gateway starts anywhere.
PACKAGED_DEFAULTS = Path(__file__).parent / "defaults"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it and quotes the value."""


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _at_least(minimum: int) -> Parser[int]:
    def parse(name: str, raw: str) -> int:
        return _int(name, raw, minimum)

    return parse


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} must be greater than zero")
    return value


def _secret_key(name: str, raw: str) -> str:
    from incidents.store.secret_box import decode_key

    try:
        decode_key(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} {exc}") from None
    return raw.strip()


def _redis_url(name: str, raw: str) -> str:
    from incidents.store.redis import check_url

    try:
        return check_url(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _queue_redis_url(name: str, raw: str) -> str:
    from incidents.store.redis_cluster import is_cluster_url

    if is_cluster_url(raw.strip()):
        raise SettingsError(
            f"{name}: RQ does not run on Redis Cluster; name a plain Redis (redis://, rediss://,"
            " unix://) or a primary found through Sentinel (redis+sentinel://)"
        )
    return _redis_url(name, raw)


def _log_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("json", "text"):
        raise SettingsError(f"{name}={raw!r} is not a log format (use json or text)")
    return value


@dataclass(frozen=True)
class Duration:
    """A span of time as settings spell it: a whole number and a unit, ``90s``, ``15m``,
    ``12h`` or ``30d``."""

    seconds: float

    @property
    def text(self) -> str:
        """The largest unit that divides it: 2592000 s -> ``30d``."""
        for unit in ("d", "h", "m"):
            size = DURATION_UNITS[unit]
            if self.seconds >= size and self.seconds % size == 0:
                return f"{int(self.seconds // size)}{unit}"
        return f"{int(self.seconds)}s"

    def __str__(self) -> str:
        return self.text


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_RETENTION = 60  # seconds: the shortest retention a setting may ask for


def parse_duration(name: str, raw: str) -> Duration:
    """``90s``, ``15m``, ``12h``, ``30d``: at least ``60s``."""
    text = raw.strip().lower()
    found = re.fullmatch(r"(\d+)\s*([smhd])", text)
    if found is None:
        raise SettingsError(
            f"{name}={raw!r} is not a duration: a whole number and a unit s, m, h or d"
            " (90s, 15m, 12h, 30d)"
        )
    value = Duration(int(found[1]) * DURATION_UNITS[found[2]])
    if value.seconds < MIN_RETENTION:
        raise SettingsError(f"{name}={raw!r} is shorter than the least allowed, 60s")
    return value


def _optional_path(name: str, raw: str) -> Path | None:
    return Path(raw.strip())


def default_dir(name: str) -> Path:
    """``name`` (``schemas`` or ``policies``) in the working directory when it is a folder
    there, else the copy shipped in the package."""
    local = Path(name)
    return local if local.is_dir() else PACKAGED_DEFAULTS / name


def parse_schedule(name: str, raw: str) -> tuple[float, ...]:
    """Parse a comma-separated list of delays in seconds, e.g. ``5,300,1800``."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise SettingsError(f"{name}={raw!r} must list at least one delay in seconds")
    delays = []
    for part in parts:
        try:
            delay = float(part)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: {part!r} is not a number of seconds") from None
        if delay < 0:
            raise SettingsError(f"{name}={raw!r}: {part!r} is negative")
        delays.append(delay)
    return tuple(delays)


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    env: str  # the environment variable, e.g. INCIDENTS_PORT
    field: str  # the attribute of Settings, e.g. port
    parser: Parser[object]
    default: object  # the value of ``Settings()``
    help: str  # one line, Markdown (the README's "meaning" column)
    shown: str | None = None  # the default as the README says it, when the value alone does not
    unset: Callable[[], object] | None = None  # the value ``from_env`` takes when unset

    @property
    def flag(self) -> str:
        """The CLI flag: ``INCIDENTS_MAX_BODY_BYTES`` -> ``--max-body-bytes``."""
        return "--" + self.env.removeprefix("INCIDENTS_").lower().replace("_", "-")

    @property
    def default_text(self) -> str:
        """The default as documented: ``unset``, ``false``, ``30``, ``5,300``, ..."""
        return self.shown if self.shown is not None else env_text(self.default)


def env_text(value: object) -> str:
    """A setting's value as the environment would spell it (``unset`` for none)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return value.text
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(env_text(v) for v in value)
    return str(value)


def setting(
    env: str,
    parser: Parser[T],
    default: T,
    help: str,  # the name argparse and the table use
    *,
    shown: str | None = None,
    unset: Callable[[], T] | None = None,
) -> T:
    """Declare a field of :class:`Settings` as a row of the settings table."""
    row = {"env": env, "parser": parser, "help": help, "shown": shown, "unset": unset}
    value: T = dataclasses.field(default=default, metadata={"setting": row})
    return value


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = setting(
        "INCIDENTS_REDIS_URL",
        _redis_url,
        None,
        "Redis to use; `incidents dev` starts an embedded one when unset. A primary found"
        " through Sentinel: `redis+sentinel://[:password@]host:port[,host:port...]/<service>"
        "[/<db>]` (API, workers and RQ follow a failover; `503` with `Retry-After` meanwhile)."
        " A Redis Cluster: `redis+cluster://[[user]:password@]host:port[,host:port...]`"
        " (`rediss+cluster://` for TLS), which needs `INCIDENTS_QUEUE_REDIS_URL`",
    )
    queue_redis_url: str | None = setting(
        "INCIDENTS_QUEUE_REDIS_URL",
        _queue_redis_url,
        None,
        "Redis for the work queue (RQ's jobs, the workers' registrations and their"
        " bookkeeping), a plain or `redis+sentinel://` URL; required when"
        " `INCIDENTS_REDIS_URL` is a cluster. It holds nothing the workers do not rebuild from"
        " the data: losing it loses no event",
        shown="`INCIDENTS_REDIS_URL`",
    )
    admin_token: str | None = setting(
        "INCIDENTS_ADMIN_TOKEN",
        _text,
        None,
        "the admin bearer token (at least 16 characters; `dev` generates one)",
    )
    secret_key: str | None = setting(
        "INCIDENTS_SECRET_KEY",
        _secret_key,
        None,
        "key the secrets in connector settings and the webhook signing secrets are stored"
        " under (AES-GCM): base64 of 32 bytes (`openssl rand -base64 32`); needed once a"
        " subscription holds a sealed one; without it signing secrets are stored unsealed"
        " (`serve` and `worker` warn; `dev` generates one)",
    )
    host: str = setting("INCIDENTS_HOST", _text, "127.0.0.1", "address the API listens on")
    port: int = setting("INCIDENTS_PORT", _at_least(1), 8080, "port the API listens on")
    log_format: str | None = setting(
        "INCIDENTS_LOG_FORMAT",
        _log_format,
        None,
        "log lines as `json` (one object per line: time, level, logger, message and the ids"
        " that apply: `event_id`, `incident`, `subscription`, `delivery`, `trace_id`) or"
        " `text`",
        shown="`json` for `serve` and `worker`, `text` for `dev`",
    )
    schemas_dir: Path = setting(  # noqa: RUF009  # declares a field, as dataclasses.field does
        "INCIDENTS_SCHEMAS_DIR",
        _path,
        PACKAGED_DEFAULTS / "schemas",
        "JSON Schemas; a schema that does not compile stops start-up, naming the file",
        shown="`schemas/`, else the package's",
        unset=lambda: default_dir("schemas"),
    )
    policies_dir: Path = setting(  # noqa: RUF009  # declares a field, as dataclasses.field does
        "INCIDENTS_POLICIES_DIR",
        _path,
        PACKAGED_DEFAULTS / "policies",
        "policy files; a bad one stops start-up with its file, line and field",
        shown="`policies/`, else the package's",
        unset=lambda: default_dir("policies"),
    )
    max_body_bytes: int = setting(
        "INCIDENTS_MAX_BODY_BYTES", _at_least(1), 1024 * 1024, "largest request body"
    )
    max_batch_events: int = setting(
        "INCIDENTS_MAX_BATCH_EVENTS",
        _at_least(1),
        1000,
        "most events in one batch (or alerts in one Alertmanager or Grafana notification);"
        " more: `413`",
    )
    max_json_depth: int = setting(
        "INCIDENTS_MAX_JSON_DEPTH",
        _at_least(1),
        64,
        "deepest nesting of arrays and objects in a JSON body (1 to 200); deeper: `400`",
    )
    max_header_bytes: int = setting(
        "INCIDENTS_MAX_HEADER_BYTES",
        _at_least(1),
        16 * 1024,
        "most bytes of request head (request line and headers); more: `431`",
    )
    body_timeout: float = setting(
        "INCIDENTS_BODY_TIMEOUT",
        _float,
        30.0,
        "seconds a client has to send the request head, and then its whole body; slower: `408`",
    )
    retry_schedule: tuple[float, ...] = setting(
        "INCIDENTS_RETRY_SCHEDULE",
        parse_schedule,
        DEFAULT_RETRY_SCHEDULE,
        "delivery retry delays in seconds",
    )
    delivery_timeout: float = setting(
        "INCIDENTS_DELIVERY_TIMEOUT", _float, 15.0, "seconds per delivery attempt"
    )
    max_retry_after: float = setting(
        "INCIDENTS_MAX_RETRY_AFTER",
        _float,
        3600.0,
        "the longest `Retry-After` of a sink's `429` or `503` that is honoured;"
        " a longer one is cut to this",
    )
    sink_concurrency: int = setting(
        "INCIDENTS_SINK_CONCURRENCY",
        _at_least(1),
        32,
        "most deliveries in flight to one subscription at once (each to a different incident;"
        " one incident's events stay in order)",
    )
    stream_retention: int = setting(
        "INCIDENTS_STREAM_RETENTION",
        _at_least(1000),
        100_000,
        "how many recent events the retained event stream keeps for readers that tail it"
        " (at least 1000); entries older than `INCIDENTS_RETENTION` are trimmed too (an entry"
        " not routed yet never is)",
    )
    retention: Duration = setting(  # noqa: RUF009  # declares a field, as dataclasses.field does
        "INCIDENTS_RETENTION",
        parse_duration,
        Duration(30 * 86400),
        "how long events are kept, with their delivery records, attempt logs, dead letters"
        " and dedup keys (`90s`, `15m`, `12h`, `30d`; at least `60s`): the dedup window. An"
        " event on an incident's timeline stays as long as the incident",
    )
    incident_retention: Duration = setting(  # noqa: RUF009  # declares a field, as dataclasses.field does
        "INCIDENTS_INCIDENT_RETENTION",
        parse_duration,
        Duration(365 * 86400),
        "how long a closed incident (its document, timeline and external references) and a"
        " resolved alert are kept, counted from the close or the resolve (at least `60s`)",
    )
    archive_dir: Path | None = setting(  # noqa: RUF009  # declares a field, as dataclasses.field does
        "INCIDENTS_ARCHIVE_DIR",
        _optional_path,
        None,
        "folder the sweeper appends what retention removes to first (daily gzip files of"
        " CloudEvents JSON Lines); unset: removed without a copy (`dev`: its data folder's"
        " `archive`)",
    )
    partitions: int = setting(
        "INCIDENTS_PARTITIONS",
        _at_least(1),
        1,
        "partitions the data is split into, each with its own hash tag (a Redis Cluster spreads"
        " them over its primaries); order is kept per incident. Set once, when a deployment is"
        " created: a gateway started with another number against the same Redis refuses to"
        " start (`1` keeps one Redis's key names)",
    )
    min_replicas: int = setting(
        "INCIDENTS_MIN_REPLICAS",
        _at_least(0),
        0,
        "replicas that must confirm an accepted event (Redis `WAIT`) before the `202`; fewer"
        " within the timeout: `503` with `Retry-After` (the event stays; a retry is a"
        " duplicate, answered `200`)",
    )
    replica_timeout_ms: int = setting(
        "INCIDENTS_REPLICA_TIMEOUT_MS",
        _at_least(1),
        500,
        "milliseconds the acceptance waits for `INCIDENTS_MIN_REPLICAS` replicas",
    )
    allow_private_sinks: bool = setting(
        "INCIDENTS_ALLOW_PRIVATE_SINKS",
        _bool,
        False,
        "allow webhook sinks on loopback/private/link-local/CGNAT addresses (`dev` turns it on)",
    )
    allow_insecure_sinks: bool = setting(
        "INCIDENTS_ALLOW_INSECURE_SINKS",
        _bool,
        False,
        "allow plain `http://` sinks; otherwise only `https://`, as the CloudEvents webhook"
        " spec asks (`dev` turns it on)",
    )
    disable_after: float = setting(
        "INCIDENTS_DISABLE_AFTER",
        _float,
        5 * 24 * 3600.0,
        "seconds of continuous failure before a subscription is disabled",
    )
    secret_grace: float = setting(
        "INCIDENTS_SECRET_GRACE",
        _float,
        24 * 3600.0,
        "seconds the old secret keeps signing after a rotation",
    )
    max_silences: int = setting(
        "INCIDENTS_MAX_SILENCES",
        _at_least(1),
        1000,
        "silences that have not ended, at most at once (workers check every delivery against"
        " them); creating one more is a `409`",
    )
    data_dir: Path = setting(  # noqa: RUF009  # declares a field, as dataclasses.field does
        "INCIDENTS_DATA_DIR",
        _path,
        Path(".incidents"),
        "where `dev` keeps the embedded Redis data and the admin token",
    )
    workers: int = setting(
        "INCIDENTS_WORKERS",
        _at_least(1),
        1,
        "API processes for `serve`; worker processes for `dev`",
    )

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"INCIDENTS_PORT={self.port!r} is not a TCP port")
        if self.max_body_bytes < 1024:
            raise SettingsError(
                f"INCIDENTS_MAX_BODY_BYTES={self.max_body_bytes!r} must be at least 1024"
            )
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise SettingsError("INCIDENTS_ADMIN_TOKEN must be at least 16 characters long")
        if not 1 <= self.max_json_depth <= 200:
            raise SettingsError(
                f"INCIDENTS_MAX_JSON_DEPTH={self.max_json_depth!r} must be between 1 and 200"
            )
        if self.max_header_bytes < 1024:
            raise SettingsError(
                f"INCIDENTS_MAX_HEADER_BYTES={self.max_header_bytes!r} must be at least 1024"
            )
        if not self.retry_schedule:
            raise SettingsError("INCIDENTS_RETRY_SCHEDULE must list at least one delay")
        if self.redis_url is not None and self.queue_redis_url is None:
            from incidents.store.redis_cluster import is_cluster_url

            if is_cluster_url(self.redis_url):
                raise SettingsError(
                    "INCIDENTS_QUEUE_REDIS_URL is not set: INCIDENTS_REDIS_URL names a Redis"
                    " Cluster, on which RQ does not run; give the work queue a Redis of its own"
                    " (a plain or redis+sentinel:// URL)"
                )

    @property
    def layout(self) -> Partitions:
        """Which partition holds what, and their key names (``store/keys.py``)."""
        from incidents.store.keys import partitions
        from incidents.store.redis_cluster import is_cluster_url

        cluster = self.redis_url is not None and is_cluster_url(self.redis_url)
        return partitions(self.partitions, self.partitions > 1 or cluster)

    @property
    def queue_url(self) -> str | None:
        """The Redis RQ runs on: ``INCIDENTS_QUEUE_REDIS_URL``, else the data Redis."""
        return self.queue_redis_url or self.redis_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping (``os.environ`` in production).
        A variable that is unset or blank keeps its default."""
        values: dict[str, object] = {}
        for row in SETTINGS:
            raw = environ.get(row.env)
            if raw is not None and raw.strip() != "":
                values[row.field] = row.parser(row.env, raw)
            elif row.unset is not None:
                values[row.field] = row.unset()
        return cls(**values)  # type: ignore[arg-type]  # each parser returns its field's type

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]  # checked by __post_init__


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(field=f.name, default=f.default, **f.metadata["setting"])
    for f in dataclasses.fields(Settings)
)
