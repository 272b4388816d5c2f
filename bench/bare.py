"""The ingest baseline: a bare Starlette endpoint that reads the body and answers 202."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    await request.body()
    return Response(b'{"accepted":[]}', status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/v1/events", accept, methods=["POST"])])
