"""The console's endpoints under ``/console``: sign-in and sign-out, the pages
(``incident_pages``, ``event_pages``, ``delivery_pages``, ``silence_pages``) and the static
files. They answer HTML, not problem documents: the OpenAPI document lists them as such."""

from __future__ import annotations

import os
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.session_cookies import (
    CONSOLE_PREFIX,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGN_IN_COOKIE,
)
from incidents.console.delivery_pages import DeliveryPages
from incidents.console.event_pages import EventPages
from incidents.console.incident_pages import IncidentPages
from incidents.console.rendering import SECURITY_HEADERS, StaticFiles, Templates
from incidents.console.signed_in import SIGN_IN, SignedIn, error_page, page, read_form
from incidents.console.silence_pages import SilencePages
from incidents.errors import CsrfRefused, IncidentsError, NotFound

SIGN_IN_SECONDS = 3600
HOME = CONSOLE_PREFIX + "/incidents"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


class SignIn:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    def form(self, request: Request, problem: str = "", status: int = 200) -> Response:
        """The sign-in form, with a fresh nonce cookie that its CSRF token is bound to."""
        nonce = os.urandom(18).hex()
        csrf = services(request).auth.sessions.csrf_token("sign-in:" + nonce)
        context = {"principal": None, "csrf": None, "sign_in_csrf": csrf, "problem": problem}
        response = self.templates.page(request, "sign_in.html", context, status=status)
        response.set_cookie(
            SIGN_IN_COOKIE,
            nonce,
            max_age=SIGN_IN_SECONDS,
            path=CONSOLE_PREFIX,
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def show(self, request: Request) -> Response:
        return self.form(request)

    async def submit(self, request: Request) -> Response:
        auth = services(request).auth
        form = await read_form(request)
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        if not nonce or not auth.sessions.csrf_ok("sign-in:" + nonce, form.get("csrf")):
            refused = CsrfRefused("the sign-in form's CSRF token is missing or wrong; try again")
            return error_page(self.templates, request, refused)
        token = form.get("token", "").strip()
        try:
            await auth.resolve(token)
        except IncidentsError as exc:
            return self.form(request, exc.detail, status=exc.status)
        cookie, _ = auth.sessions.make(token, SESSION_SECONDS)
        response = RedirectResponse(HOME, status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            path="/",
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(SIGN_IN_COOKIE, path=CONSOLE_PREFIX)
        return response


async def sign_out(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await services(request).auth.end_session(cookie)
    response = RedirectResponse(SIGN_IN, status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
    )
    return response


def routes() -> list[Route]:
    templates = Templates()
    static = StaticFiles()
    sign_in = SignIn(templates)
    incidents = IncidentPages(templates)
    deliveries = DeliveryPages(templates)
    silences = SilencePages(templates)
    events = EventPages(templates)
    guarded = page(templates)

    async def home(request: Request) -> Response:
        return RedirectResponse(HOME, status_code=303, headers=SECURITY_HEADERS)

    async def static_file(request: Request) -> Response:
        found = static.response(request.path_params["name"])
        if found is None:
            return error_page(templates, request, NotFound("no such console file"))
        return found

    async def signed_out(signed: SignedIn) -> Response:
        return await sign_out(signed.request)

    c = CONSOLE_PREFIX
    return [
        Route(c, home, methods=["GET"]),
        Route(c + "/sign-in", sign_in.show, methods=["GET"]),
        Route(c + "/sign-in", sign_in.submit, methods=["POST"]),
        Route(c + "/sign-out", guarded(signed_out), methods=["POST"]),
        Route(c + "/static/{name}", static_file, methods=["GET"]),
        Route(c + "/incidents", guarded(incidents.incidents), methods=["GET"]),
        Route(
            c + "/incidents/{id}",
            guarded(incidents.incident),
            methods=["GET"],
            name="console_incident",
        ),
        Route(c + "/incidents/{id}", guarded(incidents.act), methods=["POST"]),
        Route(c + "/alerts", guarded(incidents.alerts), methods=["GET"]),
        Route(c + "/events/{id:path}", guarded(events.event), methods=["GET"]),
        Route(c + "/subscriptions", guarded(deliveries.subscriptions), methods=["GET"]),
        Route(
            c + "/subscriptions/{id}",
            guarded(deliveries.subscription),
            methods=["GET"],
            name="console_subscription",
        ),
        Route(c + "/subscriptions/{id}", guarded(deliveries.change), methods=["POST"]),
        Route(
            c + "/dead-letters",
            guarded(deliveries.dead_letters),
            methods=["GET"],
            name="console_dead_letters",
        ),
        Route(c + "/dead-letters/{id}/redrive", guarded(deliveries.redrive), methods=["POST"]),
        Route(c + "/principals", guarded(deliveries.principals), methods=["GET"]),
        Route(c + "/silences", guarded(silences.silences), methods=["GET"]),
        Route(c + "/silences", guarded(silences.change), methods=["POST"]),
    ]


HTML = {"description": "An HTML page of the console", "content": {"text/html": {}}}
SEE_OTHER = {"description": "Done: on to the next page (or to sign-in without a session)"}


def openapi_paths() -> dict[str, Any]:
    """The console's pages, listed for completeness: they answer HTML (errors too), are
    signed in with the session cookie and their forms need the session's CSRF token. They are
    read from ``routes()``, so the list cannot miss a page."""
    paths: dict[str, Any] = {}
    for route in routes():
        path = _TEMPLATE.sub(r"{\1}", route.path)  # "{name:path}" is "{name}" in OpenAPI
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _TEMPLATE.findall(route.path)
        ]
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                operation: dict[str, Any] = {
                    "summary": f"Web console: {method} {path}",
                    "tags": ["console"],
                    "responses": {"200": HTML, "303": SEE_OTHER},
                }
                if parameters:
                    operation["parameters"] = parameters
                paths.setdefault(path, {})[method.lower()] = operation
    return paths


_TEMPLATE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")  # a Starlette path parameter
