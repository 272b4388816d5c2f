"""Subscriptions: what a subscriber asks for (the spec, and the formats it may name), how a
subscription is stored, its secrets (those in ``formatsettings``, the signing secrets, and
Standard Webhooks signing), and what its owner may see."""
