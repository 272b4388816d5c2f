"""Alert correlation: ``im.alert.*`` events grouped by ``imcorrelationkey`` per tenant.

- A trigger opens an alert, or, while one is open for its key, is deduplicated: count and
  last-seen move on, and it is not fanned out again unless its severity changes.
- Ack and resolve act on the open alert; with none open they are kept but ignored (and not
  fanned out), as PagerDuty does. After a resolve, the next trigger opens a new alert.
- Alerts meet incidents: an alert naming ``imincidentid`` is attached to that incident; an
  opening alert at or above ``alerts.declare_incident_at`` declares an incident titled with its
  summary; later alerts with the key attach to it; their resolution appears on the timeline
  and never moves the incident's status.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from incidents.errors import CrossPartition, IllegalTransition
from incidents.ingest.planning import Pending
from incidents.lifecycle.incident_context import with_alert_context
from incidents.lifecycle.incident_writes import IncidentWrites, canonical_severity, same_tenant
from incidents.lifecycle.machine import event_time
from incidents.model.alert import Alert, AlertStatus, strings
from incidents.model.cloudevent import CloudEvent
from incidents.model.incident import Incident
from incidents.model.plan import AlertOutcome, AlertPlan, AlertState, LinkedBy, Plan
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.model.types import EventType, Extension
from incidents.policy.alert_rules import AlertRules
from incidents.store import keys
from incidents.store.events import EventStore, IndexAdd


def _data(event: CloudEvent) -> Mapping[str, Any]:
    return event.data if isinstance(event.data, Mapping) else {}


class Correlator:
    def __init__(self, store: EventStore, rules: AlertRules) -> None:
        self.store = store
        self.rules = rules

    async def apply(self, p: Pending, incidents: IncidentWrites, now: datetime) -> None:
        previous = p.plan.alert
        event = p.event
        if previous is not None and previous.linked_by is LinkedBy.GATEWAY:
            # Planned before, then a conflict: undo this planner's own link and decide afresh.
            event = event.with_attributes(imincidentid=None)
        event = canonical_severity(event)
        tenant = str(event.get(Extension.TENANT) or "")
        key = str(event.get(Extension.CORRELATION_KEY))
        space = self.store.layout.of_alert(tenant, key)
        doc_key = space.alert(tenant, key)
        raw = await incidents.docs.read(doc_key)
        current = Alert.from_dict(raw) if raw is not None else None
        alert, outcome = self._next(current, event, now)
        reused = previous.declared if previous is not None else None
        incident_id, declared = await self._link(
            event, alert, outcome, incidents, p, now, reused, space
        )
        linked_by = None
        if incident_id is not None and not event.get(Extension.INCIDENT_ID):
            event = event.with_attributes(imincidentid=incident_id)
            linked_by = LinkedBy.GATEWAY
        elif incident_id is not None:
            linked_by = LinkedBy.EVENT

        state, reason = None, None
        if alert is not None:
            if outcome is AlertOutcome.OPENED:
                alert = alert.evolve(incident=incident_id)
            incidents.docs.write(p, doc_key, alert.to_dict())
            p.index.append(IndexAdd(space.ALERT_INDEX, now.timestamp(), doc_key))
            if not alert.is_open:  # retention counts from the resolve
                p.index.append(IndexAdd(space.RESOLVED_ALERTS, now.timestamp(), doc_key))
            state = AlertState(alert.number, alert.status, alert.count, alert.incident)
        else:
            reason = (
                f"no open alert for correlation key {key!r}; "
                f"nothing to {'acknowledge' if event.type == EventType.ALERT_ACK else 'resolve'}"
            )
        p.event = with_alert_context(event, alert)
        planned = AlertPlan(key, outcome, declared, linked_by, state, reason)
        p.plan = Plan(fanout=not outcome.quiet, alert=planned)

    def _next(
        self, current: Alert | None, event: CloudEvent, now: datetime
    ) -> tuple[Alert | None, AlertOutcome]:
        """The alert after ``event`` (None when the event is ignored) and what happened."""
        data = _data(event)
        seen = now.isoformat()
        at = event_time(event, now).isoformat()
        is_open = current is not None and current.is_open
        if event.type == EventType.ALERT_TRIGGER:
            if current is None or not current.is_open:
                return self._open(current, event, seen), AlertOutcome.OPENED
            severity = Severity.parse(data.get("severity", current.severity)).value
            changes: dict[str, Any] = {
                "count": current.count + 1,
                "last_seen": seen,
                "last_event": event.id,
                "severity": severity,
            }
            if severity == current.severity:
                return current.evolve(**changes), AlertOutcome.DEDUPLICATED
            worse = Severity(severity).rank < Severity(current.severity).rank
            outcome = AlertOutcome.ESCALATED if worse else AlertOutcome.DEESCALATED
            return current.evolve(**changes), outcome
        if current is None or not is_open:
            return None, AlertOutcome.IGNORED
        base = {"last_seen": seen, "last_event": event.id}
        if event.type == EventType.ALERT_ACK:
            if current.status == "acknowledged":
                return current.evolve(**base), AlertOutcome.UNCHANGED
            status: AlertStatus = "acknowledged"
            acknowledged = current.evolve(status=status, acknowledged_at=at, **base)
            return acknowledged, AlertOutcome.ACKNOWLEDGED
        status = "resolved"
        return current.evolve(status=status, resolved_at=at, **base), AlertOutcome.RESOLVED

    def _open(self, previous: Alert | None, event: CloudEvent, seen: str) -> Alert:
        data = _data(event)
        return Alert(
            key=str(event.get(Extension.CORRELATION_KEY)),
            tenant=str(event.get(Extension.TENANT) or ""),
            number=previous.number + 1 if previous is not None else 1,
            status="firing",
            summary=str(data.get("summary", "")),
            severity=Severity.parse(data.get("severity", self.rules.default_severity)).value,
            source=event.source,
            first_seen=seen,
            last_seen=seen,
            incident=previous.incident if previous is not None else None,
            source_url=str(data.get("source_url", "")),
            labels=strings(data.get("labels")),
            links=list(data.get("links") or []),
            images=list(data.get("images") or []),
            data_class=str(event.get(Extension.DATA_CLASS) or "internal"),
            visibility=str(event.get(Extension.VISIBILITY) or "internal"),
            last_event=event.id,
        )

    async def _link(
        self,
        event: CloudEvent,
        alert: Alert | None,
        outcome: AlertOutcome,
        incidents: IncidentWrites,
        p: Pending,
        now: datetime,
        reused: str | None,
        space: keys.Keyspace,
    ) -> tuple[str | None, str | None]:
        """The incident this event belongs to (attached, or declared now), if any, and the
        incident it declared. ``reused`` is the id a previous attempt declared with; ``space``
        the alert's partition, where the incident must be too."""
        named = event.get(Extension.INCIDENT_ID)
        if named:
            self._same_partition(event, str(named), space)
            incident = await incidents.get(str(named))
            if incident is None:
                raise IllegalTransition(
                    f"{event.type} names incident {named!r}, which has not been declared",
                    extra={"incident": named, "incident_status": None, "allowed": []},
                )
            same_tenant(incident, event)
            incidents.put(p, incident.evolve(version=incident.version + 1, updated_at=now))
            return incident.id, None
        linked = alert.incident if alert is not None else None
        # An alert linked to an incident of another partition (only an import into a
        # deployment of another partition count makes one) goes on without it: its events
        # update the alert and are stored with it, attached to no incident.
        if linked and self.store.layout.of_incident(linked) is space:
            incident = await incidents.get(linked)
            if incident is not None and incident.status is not IncidentStatus.CLOSED:
                incidents.put(p, incident.evolve(version=incident.version + 1, updated_at=now))
                return incident.id, None
        if outcome is AlertOutcome.OPENED and alert is not None:
            severity = Severity(alert.severity)
            if self.rules.declares(severity):
                new_id = reused or await self.store.next_incident_id(space)
                await incidents.get(new_id)  # reads the version (0) the declaration writes over
                incidents.put(p, self._declare(new_id, event, alert, now))
                return new_id, new_id
        return None, None

    def _same_partition(self, event: CloudEvent, incident_id: str, space: keys.Keyspace) -> None:
        """An alert event is stored with its alert: the incident it names must be of the same
        partition (always so with one partition)."""
        layout = self.store.layout
        held = layout.of_incident(incident_id)
        if held is space:
            return
        key = event.get(Extension.CORRELATION_KEY)
        raise CrossPartition(
            f"{event.type} names incident {incident_id!r}, but incident {incident_id!r} is in"
            f" partition {held.partition} of {layout.count} and the alert of correlation key"
            f" {key!r} in partition {space.partition}: on a partitioned deployment"
            f" (INCIDENTS_PARTITIONS={layout.count}) an alert event is stored with its alert,"
            " and an alert can only be attached to an incident of its own partition. Send the"
            " alert without imincidentid (the gateway links or declares an incident in the"
            " alert's partition), or add what it says to the incident as an"
            " im.incident.note.",
            extra={
                "incident": incident_id,
                "incident_partition": held.partition,
                "alert_partition": space.partition,
                "partitions": layout.count,
            },
        )

    @staticmethod
    def _declare(incident_id: str, event: CloudEvent, alert: Alert, now: datetime) -> Incident:
        data = _data(event)
        annotations = strings(data.get("annotations"))
        service = alert.service
        return Incident(
            id=incident_id,
            title=(alert.summary or f"alert {alert.key}")[:300],
            severity=Severity(alert.severity),
            summary=annotations.get("description", ""),
            service=service or "unknown",
            labels=dict(alert.labels),
            external_refs={"alert": alert.key},
            declared_at=event_time(event, now),
            updated_at=now,
            version=1,
            tenant=alert.tenant,
            data_class=alert.data_class,
            visibility=alert.visibility,
        )
