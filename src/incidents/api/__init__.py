"""The web layer: HTTP endpoints that sit above the domains they call; no domain imports it."""
