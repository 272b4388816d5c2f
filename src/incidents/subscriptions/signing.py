"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

Secrets are ``whsec_`` followed by base64 of the key bytes. While a secret is being rotated,
``webhook-signature`` carries one signature per valid secret, separated by spaces; a receiver
accepts the message if any of them verifies.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105  # the format's marker, not a secret
KEY_BYTES = 32
TOLERANCE_SECONDS = 5 * 60


class SignatureError(ValueError):
    """A secret or a signature header cannot be used; the message says which and why."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


@functools.lru_cache(maxsize=4096)  # signing runs for every delivery, with few secrets
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureError(f"a secret starts with {SECRET_PREFIX!r}")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise SignatureError("the secret after 'whsec_' is not valid base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, hashlib.sha256)  # one-shot: no HMAC object
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every given secret."""
    signatures = [sign(s, msg_id, timestamp, body) for s in secrets_]
    if not signatures:
        raise SignatureError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }


def verify(secret: str, headers_: Mapping[str, str], body: bytes, now: int) -> None:
    """Raise SignatureError unless one signature in the headers was made with ``secret``."""
    lowered = {k.lower(): v for k, v in headers_.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        given = lowered["webhook-signature"].split(" ")
    except (KeyError, ValueError):
        raise SignatureError(
            "webhook-id, webhook-timestamp or webhook-signature is missing"
        ) from None
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError(f"webhook-timestamp {timestamp} is too far from now ({now})")
    expected = sign(secret, msg_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, g.encode()) for g in given):
        raise SignatureError("no signature matches the secret")
