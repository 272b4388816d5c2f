"""The console's templates and static files, loaded from the package once, when the app is
built, and every HTML answer sent with the console's security headers.

Jinja2 autoescapes every template (they all end in ``.html``), so whatever an event carried
(a title, a note, a label) is shown as text, never run as markup. The Content-Security-Policy
allows only this origin's own files: no inline script or style, no other host, no framing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import resources

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def duration(seconds: object) -> str:
    """Seconds as ``1h 2m 3s`` (``—`` until it happened)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "—"
    left = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join([*parts, f"{left}s"]) if left or not parts else " ".join(parts)


def percent(share: object) -> str:
    return f"{share:.0%}" if isinstance(share, float) else "—"


def web_link(value: object) -> bool:
    """Whether a value may be shown as a link: only http and https URLs are."""
    return isinstance(value, str) and value.lower().startswith(("https://", "http://"))


class StaticFiles:
    """The console's few static files, read once; each answered with a strong ETag."""

    def __init__(self) -> None:
        folder = resources.files("incidents.console") / "static"
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for item in folder.iterdir():
            kind = STATIC_TYPES.get("." + item.name.rpartition(".")[2])
            if kind is not None:
                body = item.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                self.files[item.name] = (body, kind, etag)

    def response(self, name: str) -> Response | None:
        found = self.files.get(name)
        if found is None:
            return None
        body, kind, etag = found
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
        return Response(body, media_type=kind, headers=headers)


class Templates:
    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("incidents.console", "templates"),
            autoescape=select_autoescape(["html"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["duration"] = duration
        self.env.filters["percent"] = percent
        self.env.tests["web_link"] = web_link

    def page(
        self,
        request: Request,
        name: str,
        context: Mapping[str, object],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(request=request, **context)
        return HTMLResponse(
            html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )
