"""The read layer: everything the API (and, later, a console or a live stream) reads goes
through here, and the caller's view is applied here, once.

- ``visibility``: ``Viewer``, one caller's view (visibility, clearance, field redaction,
  ownership), the same rule delivery applies;
- ``incidents``, ``timelines``, ``alerts``, ``event_queries``: one query class each (cursor
  pages over a sorted-set index are ``store/index_pages.py``; the deliveries' reads are
  ``delivery/delivery_queries.py``);
- ``query_set``: ``Queries``, all of them, built once when the app starts.

Handlers parse the request, call a query with ``Queries.viewer(principal)``, and render.
"""
