"""The web layer: the HTTP endpoints of every area (``<area>_routes``), each with its OpenAPI
paths, and the web toolkit they share with the other doors (``toolkit/``); they sit above the
domains they call, and no domain imports them."""
