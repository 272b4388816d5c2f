"""Checking that an inbound webhook comes from the system its subscription names.

- PagerDuty (v3 webhooks): ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>``; during
  a secret rotation the header carries several, comma-separated, and one match is enough.
- Jira: ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`` (WebSub).
- ServiceNow (a business rule's REST message): ``Authorization: Bearer <inbound secret>``.

Every comparison is constant-time (``hmac.compare_digest``); any failure is ``Unauthorized``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from incidents.errors import Unauthorized

PAGERDUTY_HEADER = "x-pagerduty-signature"
HUB_HEADER = "x-hub-signature"


def _digest(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_pagerduty(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    header = headers.get(PAGERDUTY_HEADER)
    if not header:
        raise Unauthorized("send X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>")
    expected = _digest(secret, body).encode()
    found = False
    for part in header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value.strip().lower().encode(), expected):
            found = True  # no early exit: every signature is compared
    if not found:
        raise Unauthorized("no X-PagerDuty-Signature matches formatsettings.inbound_secret")


def check_hub(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    header = headers.get(HUB_HEADER)
    if not header:
        raise Unauthorized("send X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>")
    scheme, _, value = header.strip().partition("=")
    expected = _digest(secret, body).encode()
    if scheme != "sha256" or not hmac.compare_digest(value.strip().lower().encode(), expected):
        raise Unauthorized("X-Hub-Signature does not match formatsettings.inbound_secret")


def check_bearer(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <formatsettings.inbound_secret>")
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise Unauthorized("the bearer token is not this subscription's inbound secret")
