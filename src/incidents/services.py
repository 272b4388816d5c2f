"""The clients and components one running API process uses, built in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request

from incidents.auth import Authenticator, Principal
from incidents.ingest.pipeline import Ingestor
from incidents.model.cloudevent import StoredEvent
from incidents.model.schemas import SchemaRegistry
from incidents.policy.alert_rules import AlertRules
from incidents.policy.principals import PrincipalStore
from incidents.settings import Settings
from incidents.store.events import EventStore


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    registry: SchemaRegistry
    store: EventStore
    ingestor: Ingestor
    auth: Authenticator
    principals: PrincipalStore
    alert_rules: AlertRules
    may_read: Callable[[Principal, StoredEvent], bool] = field(default_factory=lambda: same_tenant)
    # Components added by later layers (policy, delivery, lifecycle) register here by name.
    extras: dict[str, Any] = field(default_factory=dict)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def same_tenant(principal: Principal, stored: StoredEvent) -> bool:
    """The read rule until policies are loaded: admins see all, others their own tenant."""
    return principal.is_admin or stored.event.get("imtenant") == principal.tenant
