"""Routing: which subscriptions an accepted event goes to (the fan-out from the outbox into
delivery lanes), and why an event went, or did not go, to a subscription (explain)."""
