"""The web layer: the HTTP endpoints of every area (``<area>_routes``), each with its OpenAPI
paths; they sit above the domains they call, and no domain imports them."""
