"""``POST /v1/connectors/{subscription_id}/inbound``: a connector's system tells the gateway
what people changed there.

No bearer token of a principal: the caller proves itself with the subscription's
``formatsettings.inbound_secret`` (a PagerDuty or Jira signature, a ServiceNow bearer secret),
checked before anything is read or stored. The events are submitted as the subscription's
owner: the principal that registered the connector and chose what it owns, so policy
(publish patterns, tenant, data-class defaults) treats them exactly as if the owner had sent
them, and a connector never gets rights its owner lacks.

Answers: ``202`` with what became of each change (also when the payload names no incident the
subscription knows, or nothing to apply: vendors retry any other answer), ``401`` unverified
(nothing stored), ``404`` no such connector subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.adapter_submit import submit
from incidents.api.toolkit.app_services import Services, services
from incidents.api.toolkit.openapi_document import errors, json_body
from incidents.api.toolkit.request_body import read_body
from incidents.api.toolkit.responses import json_response
from incidents.connectors import sync_signatures
from incidents.connectors.jira import sync as jira_sync
from incidents.connectors.pagerduty import sync as pagerduty_sync
from incidents.connectors.servicenow import sync as servicenow_sync
from incidents.connectors.sync_changes import Inbound
from incidents.connectors.sync_memory import SyncMemory
from incidents.connectors.sync_rules import Planned, Rules
from incidents.connectors.sync_settings import INBOUND_SECRET, owned
from incidents.delivery.channel_state import ChannelStateStore
from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import (
    IllegalTransition,
    NotFound,
    PolicyDenied,
    ServiceUnavailable,
    Unauthorized,
)
from incidents.model.bounded_json import parse_json
from incidents.model.incident import Incident
from incidents.model.origin import came_from
from incidents.model.principal import Principal, admin_principal
from incidents.policy.principals import PrincipalStore
from incidents.queries.query_set import Queries
from incidents.queries.visibility import Viewer
from incidents.store.secret_box import SecretUnreadable, secret_box
from incidents.subscriptions.formats import secret_pointers
from incidents.subscriptions.secret_fields import opened
from incidents.subscriptions.subscription import Subscription

log = logging.getLogger("incidents.sync")
PATH = "/v1/connectors/{subscription_id}/inbound"
TIMELINE_READ = 200  # recent timeline events whose texts count as sent by the gateway


@dataclass(frozen=True)
class Vendor:
    check: Callable[[str, Mapping[str, str], bytes], None]
    parse: Callable[[object, Mapping[str, object]], Inbound | None]


VENDORS: Mapping[str, Vendor] = {
    servicenow_sync.SYSTEM: Vendor(sync_signatures.check_bearer, servicenow_sync.parse),
    jira_sync.SYSTEM: Vendor(sync_signatures.check_hub, jira_sync.parse),
    pagerduty_sync.SYSTEM: Vendor(sync_signatures.check_pagerduty, pagerduty_sync.parse),
}
TEXT_FIELDS = ("text", "summary", "note", "reason")


def _ignored(reason: str, **more: object) -> Response:
    return json_response({"status": "ignored", "reason": reason, **more}, status=202)


def _secret(sub: Subscription, svc: Services) -> str:
    settings = sub.spec.formatsettings
    try:
        found = opened(settings, secret_pointers(sub.spec.format), sub.id, secret_box(
            svc.settings.secret_key))  # fmt: skip
    except SecretUnreadable as exc:
        raise ServiceUnavailable(str(exc)) from None
    secret = found.get(INBOUND_SECRET)
    if not isinstance(secret, str) or not secret:
        raise Unauthorized(
            f"subscription {sub.id} takes no inbound webhooks: set formatsettings.inbound_secret"
        )
    return secret


async def _owner(svc: Services, owner_id: str) -> Principal:
    if owner_id == admin_principal().id:
        return admin_principal()
    found = await svc.get(PrincipalStore).get(owner_id)
    if found is None:
        raise PolicyDenied(f"the subscription's owner {owner_id!r} has been revoked")
    return found[0]


async def _incident(
    svc: Services, sub: Subscription, inbound: Inbound, owner: Principal
) -> Incident | None:
    """The incident the payload is about, if this subscription's system holds its record."""
    layout = svc.settings.layout
    memory, states = SyncMemory(svc.redis, layout), ChannelStateStore(svc.redis, layout)
    incident_id: str | None = None
    if inbound.incident_hint:
        state = await states.get(sub.id, inbound.incident_hint)
        if state is not None and inbound.system == pagerduty_sync.SYSTEM:
            incident_id = inbound.incident_hint  # the dedup key is the incident id
        elif state is not None and state.external_id == inbound.record:
            incident_id = inbound.incident_hint
    if incident_id is None:
        incident_id = await memory.incident_of(sub.id, inbound.record)
    if incident_id is None:
        return None
    try:
        return await svc.get(Queries).incidents.find(Viewer(owner, svc.registry), incident_id)
    except NotFound:
        return None


async def _sent_texts(svc: Services, sub_id: str, incident: str) -> set[str]:
    """Texts on the incident's timeline that the gateway may have sent to the system."""
    texts: set[str] = set()
    for stored in (await svc.store.timeline(incident))[-TIMELINE_READ:]:
        if came_from(stored.event, sub_id):
            continue
        data = stored.event.data if isinstance(stored.event.data, Mapping) else {}
        texts.update(str(data[f]).strip() for f in TEXT_FIELDS if isinstance(data.get(f), str))
    return texts


async def _store(svc: Services, owner: Principal, planned: Planned) -> dict[str, Any]:
    try:
        return (await submit(svc, owner, [planned.event]))[0]
    except IllegalTransition:
        if planned.fallback is None:
            raise
        result = (await submit(svc, owner, [planned.fallback]))[0]
        return {**result, "refused": planned.event.type}


async def post_inbound(request: Request) -> Response:
    svc = services(request)
    sub_id = request.path_params["subscription_id"]
    sub = await svc.get(DeliveryQueries).subscriptions.get(sub_id)
    if sub is None or sub.spec.format not in VENDORS:
        raise NotFound(f"no ServiceNow, Jira or PagerDuty subscription {sub_id!r}")
    vendor = VENDORS[sub.spec.format]
    body = await read_body(request, svc.settings.max_body_bytes)
    vendor.check(_secret(sub, svc), request.headers, body)
    payload = parse_json(body, "the webhook", max_depth=svc.settings.max_json_depth)
    settings = sub.spec.formatsettings
    inbound = vendor.parse(payload, settings)
    if inbound is None:
        return _ignored(f"not a {sub.spec.format} webhook this endpoint reads")
    owner = await _owner(svc, sub.owner)
    incident = await _incident(svc, sub, inbound, owner)
    if incident is None:
        log.info(
            "inbound %s webhook for subscription %s names no incident it knows (record %r)",
            inbound.system, sub.id, inbound.record,
        )  # fmt: skip
        return _ignored("no incident of this subscription has this record", record=inbound.record)
    memory = SyncMemory(svc.redis, svc.settings.layout)
    state = await ChannelStateStore(svc.redis, svc.settings.layout).get(sub.id, incident.id)
    seen = await memory.seen(sub.id, incident.id)
    texts = await _sent_texts(svc, sub.id, incident.id)
    owns = owned(settings, inbound.system)
    decision = Rules(inbound, sub.id, owns, incident, state, seen, texts).decide()
    results = [await _store(svc, owner, p) for p in decision.planned]
    await memory.remember(sub.id, incident.id, inbound.record, decision.seen)
    answer = {"status": "accepted", "incident": incident.id, "accepted": results,
              "dropped": decision.dropped}  # fmt: skip
    return json_response(answer, status=202)


def routes() -> list[Route]:
    return [Route(PATH, post_inbound, methods=["POST"])]


ANSWER = {
    "type": "object",
    "properties": {
        "status": {"enum": ["accepted", "ignored"]},
        "incident": {"type": "string"},
        "accepted": {"type": "array", "items": {"type": "object"}},
        "dropped": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "change": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
        "reason": {"type": "string"},
    },
}


def openapi_paths() -> dict[str, Any]:
    return {
        PATH: {
            "post": {
                "summary": "A connector's system reports what people changed there (two-way sync)",
                "description": (
                    "PagerDuty v3 webhook (X-PagerDuty-Signature), Jira webhook "
                    "(X-Hub-Signature), or a ServiceNow incident record (Authorization: Bearer "
                    "<inbound_secret>); each change becomes a timeline event, a note, or "
                    "nothing (echoes, no-ops)"
                ),
                "security": [],
                "parameters": [
                    {
                        "name": "subscription_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "202": json_body(ANSWER, "Read; what became of each change"),
                    **errors(400, 401, 403, 404, 413, 503),
                },
            }
        }
    }
