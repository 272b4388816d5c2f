"""Subscriptions: what a subscriber asks for (the spec), how a subscription is stored, its
handshake, what its owner may see, and the reads of its deliveries."""
