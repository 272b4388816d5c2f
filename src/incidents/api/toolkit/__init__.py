"""The web toolkit: what the doors (``api``'s endpoints, the console, the app) share, and no
domain or use case imports. Who is calling (``authentication``, with the console's
``session_cookies``), the collaborators of a running app (``app_services``), a bounded
request body (``request_body``), JSON, problem+json and page answers and the query parameters
they take (``responses``), the OpenAPI document and its fragments (``openapi_document``), what
the subscribers' endpoints share (``subscriber_endpoints``), and the bounds on a request
(``request_limits`` in the app, ``bounded_protocol`` in the server). It imports nothing else
of ``api``."""
