"""What every console page shares: who is signed in (a session, never a bare header), the
form of a POST with its CSRF check, and errors shown as pages rather than problem documents."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.request_body import read_body
from incidents.api.toolkit.session_cookies import CONSOLE_PREFIX, SESSION_COOKIE, Session
from incidents.console.rendering import SECURITY_HEADERS, Templates
from incidents.errors import CsrfRefused, IncidentsError, Unauthorized
from incidents.model.principal import Principal

MAX_FORM_BYTES = 256 * 1024
SIGN_IN = CONSOLE_PREFIX + "/sign-in"


@dataclass(frozen=True)
class SignedIn:
    """A signed-in request: the principal, its session and the session's CSRF token."""

    request: Request
    principal: Principal
    session: Session
    csrf: str
    form: Mapping[str, str]

    def context(self, **more: object) -> dict[str, object]:
        return {"principal": self.principal, "csrf": self.csrf, **more}


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the console's forms send)."""
    body = await read_body(request, MAX_FORM_BYTES)
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def to_sign_in() -> Response:
    return RedirectResponse(SIGN_IN, status_code=303, headers=SECURITY_HEADERS)


async def signed_in(request: Request) -> SignedIn:
    """The signed-in request, or Unauthorized; a POST's form must carry the CSRF token."""
    cookie = request.cookies.get(SESSION_COOKIE)
    sessions = services(request).auth.sessions
    session = sessions.open(cookie) if cookie else None
    user = request.scope.get("user")
    if session is None or not isinstance(user, Principal):
        raise Unauthorized("sign in to use the console")
    csrf = sessions.csrf_token(session.id)
    form: dict[str, str] = {}
    if request.method == "POST":
        form = await read_form(request)
        if not sessions.csrf_ok(session.id, form.get("csrf")):
            raise CsrfRefused(
                "this form's CSRF token is missing or wrong; reload the page and try again"
            )
    return SignedIn(request, user, session, csrf, form)


Handler = Callable[[SignedIn], Awaitable[Response]]


def page(templates: Templates) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A console endpoint: run with the signed-in request; a missing session goes to the
    sign-in page and any other refusal is an error page with the problem's status, title and
    detail."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(await signed_in(request))
            except Unauthorized:
                return to_sign_in()
            except IncidentsError as exc:
                return error_page(templates, request, exc)

        return endpoint

    return wrap


def error_page(templates: Templates, request: Request, exc: IncidentsError) -> Response:
    user = request.scope.get("user")
    principal = user if isinstance(user, Principal) else None
    context = {"error": exc, "principal": principal, "csrf": None}
    return templates.page(request, "error.html", context, status=exc.status)
