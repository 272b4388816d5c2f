"""What a vendor webhook says changed, read from its payload, before any rule is applied.

Each vendor parser returns one ``Inbound``: who did it, which record, and its ``Change``s.
A change names the incident field it touches (``Field``, the names ``formatsettings.owns``
uses), the value it asks for in the gateway's terms, and the vendor's own value, which is what
echo detection compares with the channel state (what the gateway last sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from incidents.delivery.channels.incident_changes import Move
from incidents.errors import FieldError, pointer


class Field(StrEnum):
    STATUS = "status"
    SEVERITY = "severity"
    TITLE = "title"
    ROLES = "roles"
    NOTES = "notes"


FIELDS = tuple(Field)
DEFAULT_OWNS: Mapping[str, tuple[Field, ...]] = {
    "servicenow": (Field.NOTES,),
    "jira": (Field.NOTES,),
    "pagerduty": (Field.STATUS, Field.NOTES),
}
OWNS = "owns"
INBOUND_SECRET = "inbound_secret"  # noqa: S105 (a settings key, not a secret)
INBOUND_SECRET_POINTER = "/" + INBOUND_SECRET


@dataclass(frozen=True)
class Change:
    field: Field
    # STATUS: the moves it may mean, most likely first (ServiceNow state 2 is an ack or a
    # reopen, depending on the incident); SEVERITY: SEV1..SEV4; TITLE, NOTES: the text;
    # ROLES: the assignee of ``role``.
    moves: tuple[Move, ...] = ()
    value: str = ""
    role: str = ""
    said: str = ""  # what the system changed, in its own words ("status To Do -> Done")
    # The system's own value and the channel state key holding what the gateway last sent
    # for it (ServiceNow "state", Jira "status"/"priority", PagerDuty "action"/"severity").
    sent_key: str = ""
    vendor_value: str = ""


@dataclass(frozen=True)
class Inbound:
    system: str
    event_id: str  # the vendor's id of this notification (retries repeat it)
    actor: str  # the person in the system ("" when the system did it)
    record: str  # the record in the system: sys_id, issue key, PagerDuty incident id
    incident_hint: str = ""  # the incident id the payload names (correlation_id, dedup key)
    changes: tuple[Change, ...] = ()
    time: str | None = None
    snapshot: bool = False  # the payload is the whole record, not a change (ServiceNow)
    external: Mapping[str, object] = field(default_factory=dict)  # kept in each event


def owned(settings: Mapping[str, object], system: str) -> frozenset[Field]:
    raw = settings.get(OWNS)
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        return frozenset(Field(f) for f in raw if f in FIELDS)
    return frozenset(DEFAULT_OWNS.get(system, (Field.NOTES,)))


def validate_sync_settings(settings: Mapping[str, object]) -> list[FieldError]:
    """``owns`` (a list of status, severity, title, roles, notes) and ``inbound_secret``."""
    problems = []
    raw = settings.get(OWNS)
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
            problems.append(
                FieldError(pointer("formatsettings", OWNS), "owns is a list of field names")
            )
        else:
            problems += [
                FieldError(pointer("formatsettings", OWNS, i),
                           f"{f!r} is not one of {', '.join(FIELDS)}")
                for i, f in enumerate(raw)
                if f not in FIELDS
            ]  # fmt: skip
    secret = settings.get(INBOUND_SECRET)
    if secret is not None and (not isinstance(secret, str) or not secret.strip()):
        problems.append(
            FieldError(
                pointer("formatsettings", INBOUND_SECRET),
                "inbound_secret is the secret the system signs its webhooks with (a string)",
            )
        )
    return problems


def text_of(node: object) -> str:
    """Plain text of a string or of an ADF document (Jira comment bodies may be either)."""
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        inner = "".join(text_of(c) for c in node.get("content") or [])
        return inner + ("\n" if node.get("type") == "paragraph" else "")
    if isinstance(node, list):
        return "".join(text_of(c) for c in node)
    return ""
