"""docker-compose.yml, read as the YAML it is (no Docker engine needed): the ``ha`` profile's
Redis servers, sentinels, API and workers agree with one another and with the README."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from incidents.settings import Settings
from incidents.store.redis import SentinelTarget

ROOT = Path(__file__).resolve().parent.parent
HA = ["redis-replica", "sentinel-1", "sentinel-2", "sentinel-3", "api-ha", "worker-ha"]


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())[
        "services"
    ]
    return services


def _redis_args(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert args[0] == "redis-server", args
    return args


def test_the_ha_profile_wires_replica_sentinels_api_and_workers_to_one_another() -> None:
    """The ha services exist only in that profile; the API and workers name every sentinel and
    the service they monitor, and ask no more confirming replicas than there are."""
    services = _services()
    assert {n for n, s in services.items() if "ha" in s.get("profiles", [])} == set(HA)
    assert all("profiles" not in services[n] for n in ("redis", "api", "worker"))
    assert services["api-ha"]["environment"] == services["worker-ha"]["environment"]
    env = {k: str(v) for k, v in services["api-ha"]["environment"].items()}
    env["INCIDENTS_ADMIN_TOKEN"] = "a-token-for-the-check"
    settings = Settings.from_env(env)  # refuses a malformed URL or setting
    assert settings.redis_url is not None
    target = SentinelTarget.parse(settings.redis_url)
    sentinels = sorted(n for n in services if n.startswith("sentinel-"))
    assert sorted(target.sentinels) == [(n, 26379) for n in sentinels]
    for name in sentinels:
        script = "\n".join(services[name]["command"])
        assert "port 26379" in script
        monitor = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script)
        assert monitor is not None, script
        service, primary, port, quorum = monitor.groups()
        assert (service, primary, port) == (target.service, "redis", "6379")
        assert len(sentinels) // 2 < int(quorum) <= len(sentinels)
        assert services[name].get("restart") == "unless-stopped"
    replicas = [
        n
        for n, s in services.items()
        if s.get("command") and "redis-server" in str(s["command"])
        and "--replicaof" in _redis_args(s)
    ]  # fmt: skip
    assert replicas == ["redis-replica"]
    args = _redis_args(services["redis-replica"])
    assert args[args.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    assert 1 <= settings.min_replicas <= len(replicas)


def test_every_redis_server_fsyncs_each_write_and_copies_a_rejoining_replica_at_once() -> None:
    """Primary and replica keep an fsynced append-only file, and neither waits Redis's default
    5 s before copying a replica that (re)joins: with INCIDENTS_MIN_REPLICAS=1 the gateway
    accepts again only once the new primary has a replica."""
    services = _services()
    for name in ("redis", "redis-replica"):
        args = _redis_args(services[name])
        pairs = dict(zip(args[1::2], args[2::2], strict=False))
        assert pairs.get("--appendonly") == "yes", (name, args)
        assert pairs.get("--appendfsync") == "always", (name, args)
        assert pairs.get("--repl-diskless-sync-delay") == "0", (name, args)
        assert services[name].get("restart") == "unless-stopped"


def test_every_redis_server_never_evicts() -> None:
    """Primary and replica run with maxmemory-policy noeviction, which serve and worker
    require: a Redis that fills up refuses writes rather than dropping stored events."""
    services = _services()
    for name in ("redis", "redis-replica"):
        args = _redis_args(services[name])
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction", (name, args)


def test_the_readme_starts_the_ha_profile_as_the_compose_file_does() -> None:
    """The command the README gives for the ha profile is the one the compose file names, and
    it starts services that exist."""
    compose = (ROOT / "docker-compose.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"docker compose --profile ha up -d ([a-z -]+)`", compose)
    assert command is not None
    assert f"docker compose --profile ha up -d {command.group(1)}" in readme
    assert set(command.group(1).split()) <= set(_services())
