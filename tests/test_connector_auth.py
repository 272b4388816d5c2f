"""Connector auth: basic, bearer and OAuth2 client credentials (a token fetched as one more step
of the exchange, cached until it expires, fetched again once after a 401), and the checks of
``formatsettings.auth`` at registration."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

import orjson

from incidents.connectors.channel_base import MAX_STEPS, Outcome, OutcomeKind, Request, Response
from incidents.connectors.connector_auth import (
    SECRET_POINTERS,
    TOKEN_STEP,
    Authorizer,
    OAuth2,
    Step,
    parse_auth,
    validate_auth,
)

T0 = 1_800_000_000.0
OAUTH = {
    "oauth2": {
        "token_url": "https://sso.example.com/token",
        "client_id": "gw",
        "client_secret": "s3cret",
        "scope": "incidents",
    }
}


def _request(name: str = "create", made: int = 1) -> Request:
    step = Step(name, made, carry={"record": "abc"})
    return Request("POST", "https://acme.example.com/api", {"x": "1"}, b"{}", step.encode())


def _reply(status: int, body: object = None, **headers: str) -> Response:
    return Response(status, headers, orjson.dumps(body) if body is not None else b"", 3.0)


def test_basic_and_bearer_set_the_authorization_header() -> None:
    """Basic auth sends base64 of username:password; bearer sends the token as given."""
    auth = Authorizer()
    basic = auth.prepare({"auth": {"basic": {"username": "u", "password": "p:w"}}}, _request(), T0)
    assert basic.headers["authorization"] == "Basic " + base64.b64encode(b"u:p:w").decode()
    assert basic.step == _request().step and basic.body == b"{}"
    bearer = auth.prepare({"auth": {"bearer": "tkn"}}, _request(), T0)
    assert bearer.headers["authorization"] == "Bearer tkn"


def test_oauth_fetches_a_token_first_then_sends_the_waiting_request_with_it() -> None:
    """With no token cached the token request comes first (client credentials, form-encoded);
    its answer releases the waiting request, authorized, and the token is reused until it
    nears its expiry."""
    auth, settings = Authorizer(), {"auth": OAUTH}
    first = auth.prepare(settings, _request(), T0)
    assert (first.method, first.url) == ("POST", "https://sso.example.com/token")
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(first.body.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["gw"],
        "client_secret": ["s3cret"],
        "scope": ["incidents"],
    }
    assert Step.decode(first.step).name == TOKEN_STEP
    released = auth.answer(
        settings, first, _reply(200, {"access_token": "T1", "expires_in": 600}), T0
    )
    assert isinstance(released, Request)
    assert released.url == "https://acme.example.com/api"
    assert released.headers == {"x": "1", "authorization": "Bearer T1"}
    assert Step.decode(released.step) == Step("create", 2, carry={"record": "abc"})

    again = auth.prepare(settings, _request(), T0 + 500)
    assert again.headers["authorization"] == "Bearer T1"  # cached, no second token request
    expired = auth.prepare(settings, _request(), T0 + 590)
    assert expired.url == "https://sso.example.com/token"  # within the margin: fetched again


def test_oauth_refreshes_once_after_a_401() -> None:
    """A 401 drops the cached token and fetches another, then resends the request; a second
    401 in the same attempt is left to the channel (a failed attempt), not refreshed again."""
    auth, settings = Authorizer(), {"auth": OAUTH}
    token = auth.prepare(settings, _request(), T0)
    sent = auth.answer(settings, token, _reply(200, {"access_token": "T1"}), T0)
    assert isinstance(sent, Request)
    refresh = auth.answer(settings, sent, _reply(401), T0)
    assert isinstance(refresh, Request) and refresh.url == "https://sso.example.com/token"
    assert auth.token(auth_oauth(), T0) is None
    resent = auth.answer(settings, refresh, _reply(200, {"access_token": "T2"}), T0)
    assert isinstance(resent, Request) and resent.headers["authorization"] == "Bearer T2"
    assert Step.decode(resent.step).refreshed
    assert auth.answer(settings, resent, _reply(401), T0) is None
    assert auth.answer(settings, resent, _reply(500), T0) is None  # the channel classifies


def auth_oauth() -> OAuth2:
    found = parse_auth({"auth": OAUTH})
    assert isinstance(found, OAuth2)
    return found


def test_a_failed_token_request_is_a_failed_attempt_that_keeps_no_token() -> None:
    """A refused token request fails the attempt with the token endpoint named and its
    Retry-After honoured; a 200 without an access_token fails without logging the body."""
    auth, settings = Authorizer(), {"auth": OAUTH}
    token = auth.prepare(settings, _request(), T0)
    busy = auth.answer(
        settings, token, _reply(429, {"error": "slow down"}, **{"retry-after": "7"}), T0
    )
    assert isinstance(busy, Outcome)
    assert (busy.kind, busy.retry_after) == (OutcomeKind.FAILED, 7.0)
    assert "sso.example.com/token" in busy.error and "slow down" in busy.body
    odd = auth.answer(settings, token, _reply(200, {"token": "leaked?"}), T0)
    assert isinstance(odd, Outcome) and odd.kind == OutcomeKind.FAILED and odd.body == ""


def test_a_refresh_that_would_overrun_the_attempt_is_left_to_the_next_attempt() -> None:
    """Near MAX_STEPS a 401 is not refreshed in the attempt (the channel fails it, keeping what
    it created), and a follow-up request that would need a token too is not made."""
    auth, settings = Authorizer(), {"auth": OAUTH}
    late = _request(made=MAX_STEPS - 1)
    assert auth.answer(settings, late, _reply(401), T0) is None
    assert auth.follow(settings, _request(made=MAX_STEPS), T0) is None
    assert auth.follow(settings, _request(made=MAX_STEPS - 1), T0) is not None


def test_auth_settings_are_checked_naming_the_field() -> None:
    """Registration names each problem in formatsettings.auth by its JSON pointer."""

    def pointers(raw: object) -> list[str]:
        return [p.pointer for p in validate_auth({"auth": raw} if raw is not None else {})]

    assert pointers(None) == ["/formatsettings/auth"]
    assert pointers({"basic": {"username": "u", "password": "p"}}) == []
    assert pointers({"bearer": "t"}) == []
    assert pointers(OAUTH) == []
    assert pointers({"basic": {"username": "a:b", "password": ""}}) == [
        "/formatsettings/auth/basic/password",
        "/formatsettings/auth/basic/username",
    ]
    assert pointers({"bearer": "t", "basic": {}}) == ["/formatsettings/auth"]
    assert pointers(
        {"oauth2": {"token_url": "ftp://x", "client_id": "c", "client_secret": "s", "extra": 1}}
    ) == [
        "/formatsettings/auth/oauth2/extra",
        "/formatsettings/auth/oauth2/token_url",
    ]
    assert pointers({"digest": {}}) == ["/formatsettings/auth/digest"]
    assert pointers({"bearer": "line\nbreak"}) == ["/formatsettings/auth/bearer"]
    assert SECRET_POINTERS == (
        "/auth/basic/password",
        "/auth/bearer",
        "/auth/oauth2/client_secret",
    )


def test_step_round_trips_through_the_request() -> None:
    """What an attempt learnt survives from one request to the next."""
    step = Step("update", 3, True, {"record": "r1", "number": "INC001"})
    assert Step.decode(step.encode()) == step
    assert step.next("comment", todo="x") == Step(
        "comment", 4, True, {"record": "r1", "number": "INC001", "todo": "x"}
    )
