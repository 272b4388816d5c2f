"""Vendor connectors: how the gateway talks to ServiceNow, Jira, PagerDuty, Slack and Teams,
and what the channels of those vendors share.

- ``channel_base``: the channel seam (``Channel``, ``Message``, ``Request``, ``Response``,
  ``Outcome``, ``ChannelState``), which every channel implements and the delivery engine drives;
- ``connector_auth``: Basic, bearer and OAuth 2.0 client credentials for the ticketing systems;
- ``ticket_changes``: what an incident event changes in a ticket (ServiceNow, Jira);
- ``incident_facts``: what the paging and chat channels say about one delivery;
- ``sync_settings``: the two-way sync settings a connector subscription carries.

Two-way sync (a vendor's webhook back, ``POST /v1/connectors/{subscription_id}/inbound``):
``sync_signatures`` checks it, the vendor's parser reads it as ``sync_changes.Inbound``,
``sync_rules`` decides per change which event it becomes (with ``sync_mapping``, the mapping
tables read backwards, and ``sync_memory``, what sync remembers per subscription).
``api.sync_routes`` submits the events through the ingest pipeline, and ``model.origin``
marks them so that fan-out never sends one back to the subscription it came through.
``inbound_events`` is what the inbound side shares with the adapters: times, ids, events.

Nothing here imports the delivery engine: ``delivery`` imports the connectors.
"""
