"""Auth to the systems the connectors talk to, from ``formatsettings.auth``: ``basic``
(username and password), ``bearer`` (a token), or ``oauth2`` client credentials (RFC 6749
4.4: a token fetched from ``token_url``, cached until it expires, fetched again after a 401).

Channels stay pure: the token request is one more step of the delivery's exchange. A request
that needs a token the cache does not hold waits inside the token request's ``Step`` and is
sent, authorized, once the token arrives; a 401 drops the token and does the same, once per
attempt.

``Step`` is what a connector keeps in ``Request.step`` between the requests of one attempt:
which request it is, how many were made, whether the token was already refreshed, and what
the attempt learnt so far (a record it created), so no outcome forgets a created record.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import orjson

from incidents.delivery.address_guard import check_url
from incidents.delivery.channels.base import MAX_STEPS, Outcome, OutcomeKind, Request, Response
from incidents.delivery.channels.base import retry_after as parse_retry_after
from incidents.errors import FieldError, pointer

# JSON pointers inside ``formatsettings`` that hold secrets (masked on reads, encrypted).
SECRET_POINTERS = ("/auth/basic/password", "/auth/bearer", "/auth/oauth2/client_secret")
TOKEN_STEP = "oauth-token"  # noqa: S105 (a step name, not a secret)
EXPIRY_MARGIN = 30.0  # a token this close to its expiry is fetched again rather than used
DEFAULT_TOKEN_SECONDS = 300.0  # when the token response does not say (expires_in is optional)
MAX_TEXT = 1024  # usernames, client ids, scopes
MAX_SECRET = 8192  # passwords, API tokens, client secrets (some are long JWTs)


@dataclass(frozen=True)
class Basic:
    username: str
    password: str


@dataclass(frozen=True)
class Bearer:
    token: str


@dataclass(frozen=True)
class OAuth2:
    token_url: str
    client_id: str
    client_secret: str
    scope: str = ""


Auth = Basic | Bearer | OAuth2


def parse_auth(settings: Mapping[str, object]) -> Auth | None:
    """The auth of validated ``formatsettings``; None when it names none."""
    raw = settings.get("auth")
    if not isinstance(raw, Mapping):
        return None
    basic, bearer, oauth2 = raw.get("basic"), raw.get("bearer"), raw.get("oauth2")
    if isinstance(basic, Mapping):
        return Basic(str(basic.get("username", "")), str(basic.get("password", "")))
    if isinstance(bearer, str):
        return Bearer(bearer)
    if isinstance(oauth2, Mapping):
        return OAuth2(
            str(oauth2.get("token_url", "")),
            str(oauth2.get("client_id", "")),
            str(oauth2.get("client_secret", "")),
            str(oauth2.get("scope") or ""),
        )
    return None


def validate_auth(settings: Mapping[str, object]) -> list[FieldError]:
    """Problems with ``formatsettings.auth``: exactly one of basic, bearer, oauth2."""
    at = "/formatsettings/auth"
    raw = settings.get("auth")
    if raw is None:
        return [FieldError(at, "auth is required: one of basic, bearer or oauth2")]
    if not isinstance(raw, Mapping) or len(raw) != 1:
        return [FieldError(at, "auth is an object with exactly one of basic, bearer or oauth2")]
    [(kind, value)] = raw.items()
    if kind == "bearer":
        return _text(value, at + "/bearer", MAX_SECRET)
    if kind == "basic":
        return _object(value, at + "/basic", {"username": MAX_TEXT, "password": MAX_SECRET})
    if kind == "oauth2":
        fields = {"token_url": 2048, "client_id": MAX_TEXT, "client_secret": MAX_SECRET}
        problems = _object(value, at + "/oauth2", fields, optional={"scope": MAX_TEXT})
        url = value.get("token_url") if isinstance(value, Mapping) else None
        if isinstance(url, str) and url and isinstance(why := check_url(url), str):
            problems.append(FieldError(at + "/oauth2/token_url", why))
        return problems
    return [FieldError(pointer("formatsettings", "auth", kind), f"unknown auth {kind!r}")]


def _text(value: object, at: str, longest: int) -> list[FieldError]:
    if not isinstance(value, str) or not value or len(value) > longest:
        return [FieldError(at, f"a non-empty string of at most {longest} characters")]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return [FieldError(at, "control characters are not allowed")]
    return []


def _object(
    value: object,
    at: str,
    required: Mapping[str, int],
    optional: Mapping[str, int] | None = None,
) -> list[FieldError]:
    if not isinstance(value, Mapping):
        return [FieldError(at, f"an object with {', '.join(required)}")]
    optional = optional or {}
    problems = [
        FieldError(at + pointer(name), f"unknown field {name!r}")
        for name in value
        if name not in required and name not in optional
    ]
    for name, longest in required.items():
        problems.extend(_text(value.get(name), at + pointer(name), longest))
    for name, longest in optional.items():
        if name in value:
            problems.extend(_text(value[name], at + pointer(name), longest))
    if "username" in required and ":" in str(value.get("username", "")):
        problems.append(FieldError(at + "/username", "a basic-auth username has no ':'"))
    return problems


@dataclass(frozen=True)
class Step:
    """One request of an attempt, as the connector remembers it (``Request.step``)."""

    name: str
    made: int = 1  # requests made in this attempt, this one included
    refreshed: bool = False  # the OAuth token was already fetched again after a 401
    carry: Mapping[str, str] = field(default_factory=dict)  # what the attempt learnt so far
    pending: Mapping[str, str] | None = None  # token steps: the request waiting for the token

    def encode(self) -> str:
        return orjson.dumps(
            {
                "name": self.name,
                "made": self.made,
                "refreshed": self.refreshed,
                "carry": dict(self.carry),
                "pending": self.pending,
            }
        ).decode()

    @classmethod
    def decode(cls, raw: str) -> Step:
        found: dict[str, Any] = orjson.loads(raw) if raw.startswith("{") else {"name": raw}
        pending = found.get("pending")
        return cls(
            str(found["name"]),
            int(found.get("made", 1)),
            bool(found.get("refreshed", False)),
            {str(k): str(v) for k, v in (found.get("carry") or {}).items()},
            {str(k): str(v) for k, v in pending.items()} if isinstance(pending, dict) else None,
        )

    def next(self, name: str, **learnt: str) -> Step:
        """The step after this one in the same attempt, keeping what was learnt."""
        return Step(name, self.made + 1, self.refreshed, {**self.carry, **learnt})


def _freeze(request: Request) -> dict[str, str]:
    return {
        "method": request.method,
        "url": request.url,
        "headers": orjson.dumps(dict(request.headers)).decode(),
        "body": base64.b64encode(request.body).decode(),
        "step": request.step,
    }


def _thaw(raw: Mapping[str, str]) -> Request:
    headers = {str(k): str(v) for k, v in orjson.loads(raw["headers"]).items()}
    return Request(raw["method"], raw["url"], headers, base64.b64decode(raw["body"]), raw["step"])


def _step_of(request: Request) -> Step:
    return Step.decode(request.step)


def _with_step(request: Request, step: Step) -> Request:
    return replace(request, step=step.encode())


class Authorizer:
    """Adds credentials to a connector's requests; keeps OAuth tokens per (token_url,
    client_id) for this channel instance (one per worker process)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def token(self, auth: OAuth2, now: float) -> str | None:
        found = self._tokens.get((auth.token_url, auth.client_id))
        if found is None or found[1] <= now:
            return None
        return found[0]

    def drop(self, auth: OAuth2) -> None:
        self._tokens.pop((auth.token_url, auth.client_id), None)

    def prepare(self, settings: Mapping[str, object], request: Request, now: float) -> Request:
        """``request`` with its credentials; or, when an OAuth token is needed first, the
        token request, holding ``request`` until the token arrives."""
        auth = parse_auth(settings)
        if auth is None:
            return request
        if isinstance(auth, Basic):
            pair = f"{auth.username}:{auth.password}".encode()
            return _authorized(request, "Basic " + base64.b64encode(pair).decode())
        if isinstance(auth, Bearer):
            return _authorized(request, "Bearer " + auth.token)
        token = self.token(auth, now)
        if token is not None:
            return _authorized(request, "Bearer " + token)
        step = _step_of(request)
        form = {
            "grant_type": "client_credentials",
            "client_id": auth.client_id,
            "client_secret": auth.client_secret,
        }
        if auth.scope:
            form["scope"] = auth.scope
        waiting = _with_step(request, replace(step, made=step.made + 1))
        token_step = Step(TOKEN_STEP, step.made, step.refreshed, step.carry, _freeze(waiting))
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        }
        body = urlencode(form).encode()
        return Request("POST", auth.token_url, headers, body, token_step.encode())

    def follow(
        self, settings: Mapping[str, object], request: Request, now: float
    ) -> Request | None:
        """A later request of the attempt, authorized; None when it (with a token request
        before it) would not fit in the attempt's MAX_STEPS: the next attempt makes it."""
        prepared = self.prepare(settings, request, now)
        needed = _step_of(request).made + (prepared.step != request.step)
        return prepared if needed <= MAX_STEPS else None

    def answer(
        self, settings: Mapping[str, object], request: Request, response: Response, now: float
    ) -> Outcome | Request | None:
        """What auth makes of a response: for a token request, the request that waited for
        it (or the failure); for a 401 under OAuth, a fresh token once per attempt; None when
        the connector classifies the response itself."""
        auth = parse_auth(settings)
        step = _step_of(request)
        if not isinstance(auth, OAuth2):
            return None
        if step.name == TOKEN_STEP:
            return self._accept(auth, step, response, now)
        # a fresh token and the retried request must fit the attempt's MAX_STEPS, or the
        # attempt would end without saying what it created
        if response.status == 401 and not step.refreshed and step.made + 2 <= MAX_STEPS:
            self.drop(auth)
            bare = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
            retry = Request(request.method, request.url, bare, request.body, request.step)
            return self.prepare(settings, _with_step(retry, replace(step, refreshed=True)), now)
        if response.status == 401:
            self.drop(auth)  # the next attempt fetches another
        return None

    def _accept(
        self, auth: OAuth2, step: Step, response: Response, now: float
    ) -> Outcome | Request:
        status, latency = response.status, response.latency_ms
        token, lifetime = None, DEFAULT_TOKEN_SECONDS
        if 200 <= status < 300:
            try:
                found = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                found = None
            if isinstance(found, dict) and isinstance(found.get("access_token"), str):
                token = found["access_token"]
                expires = found.get("expires_in")
                if isinstance(expires, int | float) and not isinstance(expires, bool):
                    lifetime = float(expires)
        if token is None or step.pending is None:
            error = f"the OAuth token request to {auth.token_url} failed: HTTP {status}"
            if 200 <= status < 300:
                error = f"the OAuth token response from {auth.token_url} has no access_token"
                text = ""  # never keep what might be a token in the delivery log
            else:
                text = response.body.decode("utf-8", "replace")
            wait = None
            if status in (429, 503):
                wait = parse_retry_after(response.headers.get("retry-after"), now)
            return Outcome(OutcomeKind.FAILED, status, latency, error, text, wait)
        # a token shorter-lived than the margin is still used for this attempt's requests
        margin = min(EXPIRY_MARGIN, lifetime / 2)
        self._tokens[auth.token_url, auth.client_id] = (token, now + lifetime - margin)
        return _authorized(_thaw(step.pending), "Bearer " + token)


def _authorized(request: Request, value: str) -> Request:
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    headers["authorization"] = value
    return replace(request, headers=headers)


def failed(
    response: Response, now: float, what: str = "", kept: Sequence[int] = (429, 503)
) -> Outcome:
    """A failed outcome for an answer the connector cannot use: the body kept for the log,
    and the system's Retry-After when it is busy."""
    wait = None
    if response.status in kept:
        wait = parse_retry_after(response.headers.get("retry-after"), now)
    error = f"HTTP {response.status}" + (f": {what}" if what else "")
    text = response.body.decode("utf-8", "replace")
    return Outcome(OutcomeKind.FAILED, response.status, response.latency_ms, error, text, wait)
