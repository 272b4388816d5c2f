"""The secrets inside a subscription's ``formatsettings``: write-only and stored sealed.

Each channel names its secrets with JSON pointers into ``formatsettings``
(``SECRET_POINTERS``: "/auth/basic/password", "/routing_key", ...). Between the API and Redis
they live three ways:

- in a request body: the secret itself, or ``"***"`` meaning "keep the one stored here";
- in Redis: sealed (``store/secret_box.py``), with the subscription id and the pointer as the
  sealing context;
- in every read (API, CLI): ``"***"``.

Only a worker opens them, just before its channel renders a request.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from incidents.errors import FieldError, InvalidRequest, ServiceUnavailable
from incidents.store.secret_box import SecretBox, SecretUnreadable, is_sealed

MASK = "***"
NO_KEY = (
    "secrets in formatsettings are stored encrypted, and this gateway has no key to encrypt"
    " them with: set INCIDENTS_SECRET_KEY (base64 of 32 bytes, `openssl rand -base64 32`)"
    " for the API and the workers"
)
_MISSING = object()


def _parts(at: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in at.split("/")[1:]]


def value_at(settings: Mapping[str, object], at: str) -> object:
    """The value at JSON pointer ``at`` in ``settings``; ``_MISSING`` when there is none."""
    found: object = settings
    for part in _parts(at):
        if not isinstance(found, Mapping) or part not in found:
            return _MISSING
        found = found[part]
    return found


def _with_value(settings: Mapping[str, object], at: str, value: object) -> dict[str, object]:
    """A deep copy of ``settings`` with ``value`` at ``at`` (which exists)."""
    out: dict[str, object] = copy.deepcopy(dict(settings))
    parts = _parts(at)
    holder: dict[str, object] = out
    for part in parts[:-1]:
        inner = holder[part]
        assert isinstance(inner, dict)
        holder = inner
    holder[parts[-1]] = value
    return out


def _context(sub_id: str, at: str) -> str:
    return f"{sub_id} formatsettings{at}"


def masked(settings: Mapping[str, object], pointers: Sequence[str]) -> dict[str, object]:
    """``settings`` as every read shows them: each secret (and anything sealed) as ``***``."""
    out = _mask_sealed(settings)
    assert isinstance(out, dict)
    for at in pointers:
        found = value_at(out, at)
        if isinstance(found, str):
            out = _with_value(out, at, MASK)
    return out


def _mask_sealed(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _mask_sealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_sealed(v) for v in value]
    return MASK if is_sealed(value) else value


def holds_sealed(settings: Mapping[str, object]) -> bool:
    """Whether any value in ``settings`` is a sealed secret."""
    return _mask_sealed(settings) != settings


def seal(
    sent: Mapping[str, object],
    pointers: Sequence[str],
    stored: Mapping[str, object],
    sub_id: str,
    box: SecretBox | None,
) -> dict[str, object]:
    """``formatsettings`` as sent (and validated) made ready to store: each secret sealed,
    each ``***`` replaced by the sealed secret ``stored`` holds at the same place.

    Raises InvalidRequest for a ``***`` with nothing stored behind it, and
    ServiceUnavailable (naming INCIDENTS_SECRET_KEY) for a new secret when no key is set."""

    out = dict(sent)
    problems: list[FieldError] = []
    for at in pointers:
        found = value_at(out, at)
        if not isinstance(found, str):
            continue
        where = "/formatsettings" + at
        if found == MASK:
            kept = value_at(stored, at)
            if is_sealed(kept):
                out = _with_value(out, at, kept)
            else:
                problems.append(
                    FieldError(
                        where,
                        f"{MASK} stands for the secret stored here, and none is: send the"
                        " secret itself",
                    )
                )
            continue
        if box is None:
            raise ServiceUnavailable(
                NO_KEY, errors=[FieldError(where, "cannot be stored without a key")]
            )
        out = _with_value(out, at, box.seal(found, _context(sub_id, at)))
    if problems:
        raise InvalidRequest(
            "the subscription is not valid: " + "; ".join(p.detail for p in problems),
            errors=problems,
        )
    return out


def opened(
    settings: Mapping[str, object],
    pointers: Sequence[str],
    sub_id: str,
    box: SecretBox | None,
) -> Mapping[str, object]:
    """``settings`` with each sealed secret opened, for a channel to use; SecretUnreadable
    naming the secret and the cause when one does not open."""
    out: Mapping[str, object] = settings
    for at in pointers:
        found = value_at(settings, at)
        if not is_sealed(found):
            continue
        assert isinstance(found, str)
        where = f"the secret at /formatsettings{at} of subscription {sub_id}"
        if box is None:
            raise SecretUnreadable(
                f"{where} is stored encrypted and INCIDENTS_SECRET_KEY is not set: set it, for"
                " the workers, to the key the API stored it under"
            )
        try:
            secret = box.open(found, _context(sub_id, at))
        except SecretUnreadable as exc:
            raise SecretUnreadable(f"{where} cannot be decrypted: {exc}") from None
        out = _with_value(out, at, secret)
    return out
