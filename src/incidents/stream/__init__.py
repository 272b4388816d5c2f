"""The live event stream, ``GET /v1/stream``: Server-Sent Events of what the caller may see.

- ``selection``: the ``types`` and ``incident`` query parameters, validated;
- ``hub``: one reader per process follows the retained event stream and hands each new event
  to every open stream's bounded queue;
- ``session``: one open stream: resume after ``Last-Event-ID``, live events redacted for the
  caller through the read layer's ``Viewer``, heartbeats, disconnects;
- the endpoint and its OpenAPI description are ``api.stream_routes``.
"""
