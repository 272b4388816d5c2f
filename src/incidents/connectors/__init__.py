"""Vendor connectors, one folder per vendor, each holding what the gateway does with it:

- ``channel.py``, the outbound channel: deliveries to the vendor (``servicenow``, ``jira``,
  ``pagerduty``, ``slack``, ``teams``);
- ``sync.py``, two-way sync: the vendor's webhook back, read as what people changed there
  (``servicenow``, ``jira``, ``pagerduty``);
- ``adapter.py``, the inbound adapter: the vendor's own alert format made into ``im.alert.*``
  CloudEvents, which then go through the same acceptance pipeline as ``POST /v1/events``
  (``alertmanager``, ``grafana``, ``pagerduty``).

What several vendors share sits beside the folders:

- ``channel_base``: the channel seam (``Channel``, ``Message``, ``Request``, ``Response``,
  ``Outcome``, ``ChannelState``), which every channel implements and the delivery engine drives;
- ``connector_auth``: Basic, bearer and OAuth 2.0 client credentials for the ticketing systems;
- ``ticket_changes``: what an incident event changes in a ticket (ServiceNow, Jira);
- ``incident_facts``: what the paging and chat channels say about one delivery;
- ``sync_settings``: the two-way sync settings a connector subscription carries.

Two-way sync (a vendor's webhook back, ``POST /v1/connectors/{subscription_id}/inbound``):
``sync_signatures`` checks it, the vendor's ``sync.parse`` reads it as ``sync_changes.Inbound``,
``sync_rules`` decides per change which event it becomes (with ``sync_mapping``, the mapping
tables read backwards, and ``sync_memory``, what sync remembers per subscription).
``api.sync_routes`` submits the events through the ingest pipeline, and ``model.origin``
marks them so that fan-out never sends one back to the subscription it came through.
``inbound_events`` is what the inbound side (adapters and sync) makes events with: times,
ids, events, the check of an input schema.

The generic CloudEvents webhook channel is not a vendor: it stays with the delivery engine
(``delivery/channels/``), which also holds the registry of every channel by format name.
Nothing here imports the delivery engine or the subscriptions: ``delivery`` imports the
connectors, and so does ``subscriptions/formats.py`` (the formats a subscription may name).
"""
