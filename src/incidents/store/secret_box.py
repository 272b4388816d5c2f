"""Secrets at rest: AES-256-GCM under the key from ``INCIDENTS_SECRET_KEY``.

A sealed value is the text ``sealed:v1:`` followed by the URL-safe base64 of a fresh 96-bit
nonce and the ciphertext with its tag. Each value is sealed with a context (the subscription
and the place of the secret in it) as associated data, so a sealed value copied to another
subscription or another field does not open there. Redis holds only sealed values; the key
never goes to Redis (the settings handed to jobs leave it out).
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = "sealed:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
GENERATE = "generate one with `openssl rand -base64 32`"


class SecretUnreadable(Exception):
    """A sealed secret cannot be opened: no key is configured, or not the key it was sealed
    under, or the stored value is damaged. The message says which secret and what to do."""


def new_key() -> str:
    """A fresh key, as ``INCIDENTS_SECRET_KEY`` takes it: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def decode_key(text: str) -> bytes:
    """The 32 bytes of a key given in base64 (standard or URL-safe, padded or not);
    ValueError saying what is wrong otherwise."""
    raw = text.strip()
    padded = raw + "=" * (-len(raw) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"is not base64; {GENERATE}") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"decodes to {len(key)} bytes, not {KEY_BYTES}; {GENERATE}")
    return key


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED)


class SecretBox:
    """Seals and opens secrets with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a secret key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, secret: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), context.encode())
        return SEALED + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: str, context: str) -> str:
        """The secret sealed in ``value``; SecretUnreadable if it does not open."""
        if not is_sealed(value):
            raise SecretUnreadable("the stored value is not a sealed secret")
        try:
            raw = base64.urlsafe_b64decode(value[len(SEALED) :])
        except (binascii.Error, ValueError):
            raise SecretUnreadable("the stored value is damaged") from None
        try:
            return self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()
            ).decode()
        except (InvalidTag, ValueError):
            raise SecretUnreadable(
                "it does not open with INCIDENTS_SECRET_KEY (not the key it was stored under)"
            ) from None


@lru_cache(maxsize=4)
def secret_box(key: str | None) -> SecretBox | None:
    """The box for a configured key (``Settings.secret_key``, already checked), None when
    no key is set."""
    return None if key is None else SecretBox(decode_key(key))
