"""The web console (``/console``): server-rendered HTML pages over the read layer, signed in
with a token that becomes a session cookie (``session``), forms guarded by a CSRF token and
every page sent under a strict Content-Security-Policy (``security``)."""
