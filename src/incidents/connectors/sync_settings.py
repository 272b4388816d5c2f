"""The settings of two-way sync that a connector subscription carries, checked at
registration by the channels that take inbound webhooks (ServiceNow, Jira, PagerDuty):
``formatsettings.owns`` (which incident fields the system may change) and
``formatsettings.inbound_secret`` (what its webhooks are verified with). The inbound side
(``sync_rules`` and the vendors' webhook parsers) reads them with the same names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

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
