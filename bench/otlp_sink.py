"""An OTLP/HTTP trace endpoint that takes every export and discards it: what the gateway
exports to in the ``tracing`` benchmark (the cost measured is the gateway's, not a
collector's)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def export(request: Request) -> Response:
    await request.body()
    return Response(b"", media_type="application/x-protobuf")  # an empty ExportTraceServiceResponse


app = Starlette(routes=[Route("/v1/traces", export, methods=["POST"])])
