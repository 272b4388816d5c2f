"""Jira Cloud webhooks: ``jira:issue_updated`` (its ``changelog`` items for status, priority,
summary and assignee) and ``comment_created``.
"""

from __future__ import annotations

from collections.abc import Mapping

from incidents.connectors.jira import channel
from incidents.connectors.sync_changes import Change, Inbound, text_of
from incidents.connectors.sync_mapping import moves_for, severity_for
from incidents.connectors.sync_settings import Field
from incidents.connectors.ticket_changes import table

SYSTEM = "jira"
ISSUE_UPDATED = "jira:issue_updated"
COMMENT_CREATED = "comment_created"
EVENTS = (ISSUE_UPDATED, COMMENT_CREATED)


def _person(raw: object) -> str:
    if isinstance(raw, Mapping):
        return str(raw.get("displayName") or raw.get("emailAddress") or raw.get("accountId") or "")
    return ""


def _change(item: Mapping[str, object], settings: Mapping[str, object]) -> Change | None:
    name = str(item.get("field") or "").casefold()
    before, after = str(item.get("fromString") or ""), str(item.get("toString") or "")
    said = f"{item.get('field')} {before or '(none)'} -> {after or '(none)'}"
    if name == "status":
        moves = moves_for(table(settings, "status", channel.STATUS), after)
        return Change(Field.STATUS, moves, said=said, sent_key="status", vendor_value=after)
    if name == "priority":
        sev = severity_for(table(settings, "severity", channel.SEVERITY), after)
        return Change(Field.SEVERITY, value=sev or "", said=said, sent_key="priority",
                      vendor_value=after)  # fmt: skip
    if name == "summary":
        return Change(Field.TITLE, value=after, said=said, sent_key="summary", vendor_value=after)
    if name == "assignee" and after:
        return Change(Field.ROLES, value=after, role="commander", said=said,
                      sent_key="assignee", vendor_value=after)  # fmt: skip
    return None


def parse(payload: object, settings: Mapping[str, object]) -> Inbound | None:
    """The webhook's changes; None for an event or payload this endpoint does not read."""
    if not isinstance(payload, Mapping) or payload.get("webhookEvent") not in EVENTS:
        return None
    issue = payload.get("issue")
    if not isinstance(issue, Mapping) or not issue.get("key"):
        return None
    key = str(issue["key"])
    fields = issue.get("fields")
    labels = fields.get("labels") if isinstance(fields, Mapping) else None
    hint = next((str(x) for x in labels or [] if str(x).startswith("INC-")), "")
    stamp = str(payload.get("timestamp") or "")
    changes: list[Change] = []
    actor = _person(payload.get("user"))
    if payload["webhookEvent"] == COMMENT_CREATED:
        comment = payload.get("comment")
        if not isinstance(comment, Mapping):
            return None
        text = text_of(comment.get("body")).strip()
        if text:
            changes.append(Change(Field.NOTES, value=text, said="comment", vendor_value=text))
        actor = _person(comment.get("author")) or actor
        event_id = f"{key}:comment:{comment.get('id')}"
    else:
        log = payload.get("changelog")
        items = log.get("items") if isinstance(log, Mapping) else None
        for item in items or []:
            if isinstance(item, Mapping) and (found := _change(item, settings)) is not None:
                changes.append(found)
        event_id = f"{key}:changelog:{log.get('id') if isinstance(log, Mapping) else stamp}"
    return Inbound(
        system=SYSTEM,
        event_id=event_id,
        actor=actor,
        record=key,
        incident_hint=hint,
        changes=tuple(changes),
        external={"system": SYSTEM, "issue": key, "webhookEvent": payload["webhookEvent"]},
    )
