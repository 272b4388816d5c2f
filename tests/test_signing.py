"""Standard Webhooks signing, checked against the independent standardwebhooks and svix."""

from __future__ import annotations

import base64
import time

import pytest
import standardwebhooks.webhooks

from incidents.subscriptions import signing

BODY = b'{"specversion":"1.0","id":"e1","source":"/t","type":"im.incident.note"}'


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    """Secrets are whsec_ + base64 of 32 bytes, and two are never the same."""
    one, two = signing.new_secret(), signing.new_secret()
    assert one.startswith("whsec_") and one != two
    assert len(base64.b64decode(one.removeprefix("whsec_"))) == 32


def test_standardwebhooks_and_svix_verify_our_signature() -> None:
    """Both reference libraries accept the headers we produce."""
    secret = signing.new_secret()
    headers = signing.headers([secret], "msg_1", int(time.time()), BODY)
    standardwebhooks.webhooks.Webhook(secret).verify(BODY, headers)
    import svix.webhooks  # here: importing svix takes a quarter second

    svix.webhooks.Webhook(secret).verify(BODY, headers)


def test_during_rotation_either_secret_verifies() -> None:
    """With two secrets, the header carries two signatures and each secret alone verifies."""
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.headers([new, old], "msg_2", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.webhooks.Webhook(secret).verify(BODY, headers)
        signing.verify(secret, headers, BODY, int(time.time()))


def test_a_changed_body_or_another_secret_fails_verification() -> None:
    """Tampering with the body, or verifying with an unrelated secret, is detected."""
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], "msg_3", now, BODY)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, headers, BODY + b" ", now)
    with pytest.raises(signing.SignatureError):
        signing.verify(signing.new_secret(), headers, BODY, now)
    with pytest.raises(signing.SignatureError, match="too far"):
        signing.verify(secret, headers, BODY, now + 3600)


def test_a_secret_without_the_prefix_is_refused() -> None:
    """Only whsec_ secrets are used, with a message that says so."""
    with pytest.raises(signing.SignatureError, match="whsec_"):
        signing.sign("abc", "m", 1, b"")
