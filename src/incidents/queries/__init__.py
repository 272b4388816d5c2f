"""The read layer: everything the API (and, later, a console or a live stream) reads goes
through here, and the caller's view is applied here, once.

- ``visibility``: ``Viewer``, one caller's view (visibility, clearance, field redaction,
  ownership), the same rule delivery applies;
- ``pages``: cursor pages over a sorted-set index (``walk_index``, ``PageRequest``, ``Page``);
- ``incidents``, ``timelines``, ``alerts``, ``events``, ``deliveries``: one query class each;
- ``catalog``: ``Queries``, all of them, built once when the app starts.

Handlers parse the request, call a query with ``Queries.viewer(principal)``, and render.
"""
