"""The clients and components one running API process uses, built once in the app's lifespan
and passed to every handler (``services(request)``); nothing here is built per request.

The container names only what sits below the domains: the settings, Redis, the schemas, the
event store, the authenticator and the app's clock. Each domain's component (the ingestor, the
read layer, the delivery queries, the principal store, ...) is held by its class, which
``create_app`` hands over, and a handler asks for it by that class:
``services(request).get(Queries)``. So this module imports no domain; it is part of the web
toolkit that the endpoints (``api``) use, and no domain imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
from jsonschema.protocols import Validator
from starlette.requests import HTTPConnection

from incidents.api.toolkit.authentication import Authenticator
from incidents.model.schemas import SchemaRegistry
from incidents.settings import Settings
from incidents.store.events import EventStore

T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    registry: SchemaRegistry
    store: EventStore
    auth: Authenticator
    clock: Callable[[], datetime]  # the app's clock (create_app(clock=...)), which stamps events
    adapter_schemas: AdapterSchemas
    # RQ's Redis (``INCIDENTS_QUEUE_REDIS_URL``): the client ``redis`` is, when RQ shares it.
    queue_redis: aioredis.Redis
    components: Mapping[type[object], object] = field(default_factory=dict)

    def get(self, kind: type[T]) -> T:
        """The component of class ``kind`` the app was built with."""
        found = self.components.get(kind)
        if not isinstance(found, kind):
            raise LookupError(f"the app was built without a {kind.__name__}")
        return found


def by_class(*components: object) -> dict[type[object], object]:
    """Components keyed by their class, as ``Services.get`` finds them."""
    keyed: dict[type[object], object] = {}
    for component in components:
        kind = type(component)
        assert kind not in keyed, f"two components of class {kind.__name__}"
        keyed[kind] = component
    return keyed


class AdapterSchemas:
    """The inbound adapters' payload validators (``<schemas>/adapters/<name>.json``), each
    compiled when first used and kept (most processes use one adapter, or none)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._compiled: dict[str, Validator] = {}

    def get(self, name: str) -> Validator:
        found = self._compiled.get(name)
        if found is None:
            found = self._compiled[name] = SchemaRegistry.compile(self.directory / f"{name}.json")
        return found


def services(conn: HTTPConnection) -> Services:
    found = conn.app.state.services
    assert isinstance(found, Services), "the app's lifespan has not run"
    return found
