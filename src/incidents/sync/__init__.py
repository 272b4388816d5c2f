"""Two-way sync: what people change in ServiceNow, Jira and PagerDuty comes back as timeline
events (``POST /v1/connectors/{subscription_id}/inbound``).

Where a vendor webhook goes: ``connectors.sync_signatures`` checks it, the vendor's parser
(``servicenow``, ``jira``, ``pagerduty``) reads it as ``connectors.sync_changes.Inbound``,
``connectors.sync_rules`` decides per
change (field ownership, echoes, no-ops) which event it becomes, and ``api.sync_routes`` submits
those through the ingest pipeline. ``origin`` marks such events so that fan-out never sends one back
to the subscription it came through.
"""
