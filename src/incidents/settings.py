"""Settings, read from the environment (every setting also has a CLI flag)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# The schemas and policies that ship inside the package: used when no setting names a folder
# and the working directory has none of that name, so an installed gateway starts anywhere.
PACKAGED_DEFAULTS = Path(__file__).parent / "defaults"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it and quotes the value."""


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


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} must be greater than zero")
    return value


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
class Settings:
    redis_url: str | None = None
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    schemas_dir: Path = PACKAGED_DEFAULTS / "schemas"
    policies_dir: Path = PACKAGED_DEFAULTS / "policies"
    max_body_bytes: int = 1024 * 1024
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    delivery_timeout: float = 15.0
    allow_private_sinks: bool = False
    allow_insecure_sinks: bool = False
    max_batch_events: int = 1000
    max_json_depth: int = 64
    max_header_bytes: int = 16 * 1024
    body_timeout: float = 30.0
    max_retry_after: float = 3600.0
    sink_concurrency: int = 32
    stream_retention: int = 100_000
    disable_after: float = 5 * 24 * 3600.0
    secret_grace: float = 24 * 3600.0
    data_dir: Path = Path(".incidents")
    workers: int = 1

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping (``os.environ`` in production)."""
        values: dict[str, object] = {}

        def get(name: str) -> str | None:
            raw = environ.get(name)
            return raw if raw is not None and raw.strip() != "" else None

        if (raw := get("INCIDENTS_REDIS_URL")) is not None:
            values["redis_url"] = raw.strip()
        if (raw := get("INCIDENTS_ADMIN_TOKEN")) is not None:
            values["admin_token"] = raw.strip()
        if (raw := get("INCIDENTS_HOST")) is not None:
            values["host"] = raw.strip()
        if (raw := get("INCIDENTS_PORT")) is not None:
            values["port"] = _int("INCIDENTS_PORT", raw, 1)
        raw = get("INCIDENTS_SCHEMAS_DIR")
        values["schemas_dir"] = Path(raw) if raw is not None else default_dir("schemas")
        raw = get("INCIDENTS_POLICIES_DIR")
        values["policies_dir"] = Path(raw) if raw is not None else default_dir("policies")
        if (raw := get("INCIDENTS_MAX_BODY_BYTES")) is not None:
            values["max_body_bytes"] = _int("INCIDENTS_MAX_BODY_BYTES", raw, 1)
        if (raw := get("INCIDENTS_RETRY_SCHEDULE")) is not None:
            values["retry_schedule"] = parse_schedule("INCIDENTS_RETRY_SCHEDULE", raw)
        if (raw := get("INCIDENTS_DELIVERY_TIMEOUT")) is not None:
            values["delivery_timeout"] = _float("INCIDENTS_DELIVERY_TIMEOUT", raw)
        if (raw := get("INCIDENTS_ALLOW_PRIVATE_SINKS")) is not None:
            values["allow_private_sinks"] = _bool("INCIDENTS_ALLOW_PRIVATE_SINKS", raw)
        if (raw := get("INCIDENTS_ALLOW_INSECURE_SINKS")) is not None:
            values["allow_insecure_sinks"] = _bool("INCIDENTS_ALLOW_INSECURE_SINKS", raw)
        if (raw := get("INCIDENTS_MAX_BATCH_EVENTS")) is not None:
            values["max_batch_events"] = _int("INCIDENTS_MAX_BATCH_EVENTS", raw, 1)
        if (raw := get("INCIDENTS_MAX_JSON_DEPTH")) is not None:
            values["max_json_depth"] = _int("INCIDENTS_MAX_JSON_DEPTH", raw, 1)
        if (raw := get("INCIDENTS_MAX_HEADER_BYTES")) is not None:
            values["max_header_bytes"] = _int("INCIDENTS_MAX_HEADER_BYTES", raw, 1)
        if (raw := get("INCIDENTS_BODY_TIMEOUT")) is not None:
            values["body_timeout"] = _float("INCIDENTS_BODY_TIMEOUT", raw)
        if (raw := get("INCIDENTS_MAX_RETRY_AFTER")) is not None:
            values["max_retry_after"] = _float("INCIDENTS_MAX_RETRY_AFTER", raw)
        if (raw := get("INCIDENTS_SINK_CONCURRENCY")) is not None:
            values["sink_concurrency"] = _int("INCIDENTS_SINK_CONCURRENCY", raw, 1)
        if (raw := get("INCIDENTS_STREAM_RETENTION")) is not None:
            values["stream_retention"] = _int("INCIDENTS_STREAM_RETENTION", raw, 1000)
        if (raw := get("INCIDENTS_DISABLE_AFTER")) is not None:
            values["disable_after"] = _float("INCIDENTS_DISABLE_AFTER", raw)
        if (raw := get("INCIDENTS_SECRET_GRACE")) is not None:
            values["secret_grace"] = _float("INCIDENTS_SECRET_GRACE", raw)
        if (raw := get("INCIDENTS_DATA_DIR")) is not None:
            values["data_dir"] = Path(raw)
        if (raw := get("INCIDENTS_WORKERS")) is not None:
            values["workers"] = _int("INCIDENTS_WORKERS", raw, 1)
        return cls(**values)  # type: ignore[arg-type]  # keys are the field names above

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]  # checked by __post_init__
