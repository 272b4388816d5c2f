"""The clients and components one running API process uses, built once in the app's lifespan
and passed to every handler (``services(request)``); nothing here is built per request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from jsonschema.protocols import Validator
from starlette.requests import HTTPConnection

from incidents.auth import Authenticator
from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.ingest.pipeline import Ingestor
from incidents.model.schemas import SchemaRegistry
from incidents.policy.alert_rules import AlertRules
from incidents.policy.principals import PrincipalStore
from incidents.queries.catalog import Queries
from incidents.settings import Settings
from incidents.store.events import EventStore

if TYPE_CHECKING:  # openapi describes the routes, which use this module
    from incidents.openapi import OpenAPIDocument


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    registry: SchemaRegistry
    store: EventStore
    ingestor: Ingestor
    auth: Authenticator
    principals: PrincipalStore
    alert_rules: AlertRules
    queries: Queries
    deliveries: DeliveryQueries  # subscriptions, delivery logs and dead letters
    openapi: OpenAPIDocument
    adapter_schemas: AdapterSchemas


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
