"""Subscriptions' signing secrets (Standard Webhooks ``whsec_...``) at rest.

They live in the subscription's hash (field ``secrets``: a JSON list of ``[secret,
valid-until]``, the current one first, then those kept signing through a rotation). With
``INCIDENTS_SECRET_KEY`` set, each is stored sealed (``store/secret_box.py``) with its
subscription's id in the sealing context, so a sealed secret copied into another
subscription does not open there; anyone who reads Redis, or a copy of its files, learns no
secret to sign with. Without a key they are stored as they are, and ``serve`` and ``worker``
say so at start-up.

Secrets stored plain (before a key was set) are sealed in place by :func:`seal_stored` when
``serve`` or ``worker`` starts with a key, and whenever the API writes the subscription.
Until then they keep signing: a worker opens the sealed ones and takes plain ones as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson
import redis

from incidents.store import keys
from incidents.store.secret_box import SecretBox, SecretUnreadable, is_sealed

if TYPE_CHECKING:  # named in annotations only
    from incidents.subscriptions.subscription import Secret


def context(sub_id: str) -> str:
    """The sealing context of a subscription's signing secrets."""
    return f"{sub_id} signing secret"


def _sealed_value(value: str, sub_id: str, box: SecretBox) -> str:
    return value if is_sealed(value) else box.seal(value, context(sub_id))


def sealed(secrets: Sequence[Secret], sub_id: str, box: SecretBox | None) -> tuple[Secret, ...]:
    """``secrets`` as stored: each plain one sealed (all left as they are without a key)."""
    if box is None:
        return tuple(secrets)
    return tuple(replace(s, value=_sealed_value(s.value, sub_id, box)) for s in secrets)


def opened(secrets: Sequence[Secret], sub_id: str, box: SecretBox | None) -> tuple[Secret, ...]:
    """``secrets`` to sign with: each sealed one opened; SecretUnreadable naming the
    subscription and the cause when the current one does not open. A previous one (kept
    through a rotation) that does not open is left out: after ``INCIDENTS_SECRET_KEY`` was
    replaced, a rotation makes the subscription sign again at once with its new secret,
    rather than failing every delivery for as long as the old one is kept."""
    out = []
    for s in secrets:
        if not is_sealed(s.value):
            out.append(s)
            continue
        where = f"the signing secret of subscription {sub_id}"
        if box is None:
            raise SecretUnreadable(
                f"{where} is stored encrypted and INCIDENTS_SECRET_KEY is not set: set it, for"
                " the workers, to the key the API stored it under"
            )
        try:
            out.append(replace(s, value=box.open(s.value, context(sub_id))))
        except SecretUnreadable as exc:
            if s.until is not None:
                continue
            raise SecretUnreadable(f"{where} cannot be decrypted: {exc}") from None
    return tuple(out)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def seal_stored(connection: redis.Redis, box: SecretBox) -> int:
    """Seal in place every signing secret stored plain; the number of subscriptions changed.

    Each subscription is rewritten only if its secrets did not change meanwhile (a rotation
    by the API, say: then it is read again), so no secret is lost; the version bump makes the
    workers read the sealed form."""
    changed = 0
    for member in connection.sscan_iter(keys.SUBSCRIPTIONS):
        sub_id = _text(member)
        key = keys.subscription(sub_id)
        with connection.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    raw = pipe.hget(key, "secrets")
                    stored = [] if raw is None else orjson.loads(raw)
                    if all(is_sealed(value) for value, _ in stored):
                        break
                    secrets = [[_sealed_value(v, sub_id, box), until] for v, until in stored]
                    pipe.multi()
                    pipe.hset(key, "secrets", orjson.dumps(secrets))
                    pipe.sadd(keys.SUBSCRIPTIONS_SEALED, sub_id)
                    pipe.incr(keys.SUBSCRIPTIONS_VERSION)
                    pipe.execute()
                    changed += 1
                    break
                except redis.WatchError:
                    continue
    return changed
