"""Removal of closed incidents (with their timelines, external references and channel state)
and of resolved alerts, once past the incident retention, one partition at a time."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import cast

import orjson

from incidents.archive.daily import EVENTS
from incidents.archive.records import ALERT_TYPE, INCIDENT_TYPE, event_record, snapshot
from incidents.connectors.channel_base import ChannelState
from incidents.model.alert import Alert
from incidents.retention.removal import Removal, parse_time
from incidents.store import keys
from incidents.store.events import read_events, stored_event

TIMELINE_PER_STEP = 500  # events of closed incidents removed per step
DOCUMENTS_PER_STEP = 50  # incidents and alerts looked at per step


class DocumentRemoval(Removal):
    def incidents(
        self, space: keys.Keyspace, cutoff: float, floor: int, removed: Counter[str]
    ) -> None:
        """Incidents of ``space`` closed before ``cutoff``: their timelines' events first, a
        bounded number per step, then the document, its references and index entries.
        ``floor``: the partition's lowest sequence delivery may still need."""
        found = self.client.zrangebyscore(
            space.CLOSED_INCIDENTS, "-inf", cutoff, start=0, num=DOCUMENTS_PER_STEP
        )
        budget = TIMELINE_PER_STEP
        for incident_id in (i.decode() for i in cast(list[bytes], found)):
            if budget <= 0:
                return
            timeline = space.timeline(incident_id)
            newest = self.client.zrange(timeline, -1, -1, withscores=True)
            if newest and int(float(newest[0][1])) >= floor:
                continue  # delivery still needs its latest events
            members = cast(list[bytes], self.client.zrange(timeline, 0, budget - 1))
            if members:
                seqs = [int(m) for m in members]
                raws = read_events(self.client, seqs, self.layout)
                events = [stored_event(r) for r in raws if r is not None]
                self.archived(EVENTS, [event_record(s) for s in events])
                with self.pipeline() as pipe:
                    self.forget_events(pipe, space, events)
                    pipe.zrem(timeline, *members)
                    answers = pipe.execute()
                removed["event"] += sum(answers[: 2 * len(events) : 2])
                removed["dedup"] += sum(answers[1 : 2 * len(events) : 2])
                budget -= len(members)
                if self.client.exists(timeline):
                    return  # the rest of this timeline next step
            if self.forget_incident(space, incident_id):
                removed["incident"] += 1

    def forget_incident(self, space: keys.Keyspace, incident_id: str) -> bool:
        doc, refs_key = space.incident(incident_id), space.incident_refs(incident_id)
        version, raw = cast(list[bytes | None], self.client.hmget(doc, ["v", "j"]))
        stored_refs = cast(dict[bytes, bytes], self.client.hgetall(refs_key))
        refs = {k.decode(): v.decode() for k, v in stored_refs.items()}
        if raw is not None:
            document = orjson.loads(raw)
            at = parse_time(document.get("updated_at")) or datetime.now(UTC)
            data = {"incident": document, "refs": refs}
            line = snapshot(INCIDENT_TYPE, incident_id, at, data, int(version or 0))
            self.archived(EVENTS, [line])
        gone = self._forget(
            keys=[
                doc,
                refs_key,
                space.timeline(incident_id),
                space.INCIDENT_INDEX,
                space.CLOSED_INCIDENTS,
            ],
            args=[(version or b"0").decode(), incident_id, 2],
        )
        if not int(gone):
            return False
        self.forget_channel_state(space, incident_id)
        return raw is not None

    def forget_channel_state(self, space: keys.Keyspace, incident_id: str) -> None:
        """What each subscription's channel kept for the incident: its state (in the
        incident's partition), what the other system last sent, and that system's record id
        pointing back at it (global keys: commands of their own, in no script)."""
        subs = sorted(cast(bytes, s).decode() for s in self.client.smembers(keys.SUBSCRIPTIONS))
        with self.client.pipeline(transaction=False) as pipe:
            for sub in subs:
                pipe.hget(space.channel_state(sub), incident_id)
            states = cast(list[bytes | None], pipe.execute())
        with self.client.pipeline(transaction=False) as pipe:
            for sub, state in zip(subs, states, strict=True):
                pipe.hdel(space.channel_state(sub), incident_id)
                pipe.hdel(keys.sync_seen(sub), incident_id)
                if state is not None:
                    kept = ChannelState.decode(state)
                    records = [kept.external_id, kept.data.get("number")]
                    for record in filter(None, records):
                        pipe.hdel(keys.sync_records(sub), record)
            pipe.execute()

    def alerts(self, space: keys.Keyspace, cutoff: float, removed: Counter[str]) -> None:
        """Alerts of ``space`` resolved before ``cutoff`` (one that fired again since is
        left)."""
        found = self.client.zrangebyscore(
            space.RESOLVED_ALERTS, "-inf", cutoff, start=0, num=DOCUMENTS_PER_STEP
        )
        for doc_key in (k.decode() for k in cast(list[bytes], found)):
            version, raw = cast(list[bytes | None], self.client.hmget(doc_key, ["v", "j"]))
            alert = Alert.from_dict(orjson.loads(raw)) if raw is not None else None
            if alert is not None and alert.is_open:
                self.client.zrem(space.RESOLVED_ALERTS, doc_key)  # indexed again at its resolve
                continue
            if alert is not None:
                at = parse_time(alert.resolved_at or alert.last_seen) or datetime.now(UTC)
                record_id = f"{alert.tenant}/{alert.key}"
                line = snapshot(
                    ALERT_TYPE, record_id, at, {"alert": alert.to_dict()}, int(version or 0)
                )
                self.archived(EVENTS, [line])
            gone = self._forget(
                keys=[doc_key, space.ALERT_INDEX, space.RESOLVED_ALERTS],
                args=[(version or b"0").decode(), doc_key, 0],
            )
            if int(gone) and alert is not None:
                removed["alert"] += 1
