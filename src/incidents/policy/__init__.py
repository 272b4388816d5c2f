"""Where events are judged: principals, policy files, data class and visibility.

- ``principals``: API principals and their hashed tokens in Redis (``/v1/principals`` is served
  by ``api.principal_routes``).
- ``files`` reads ``policies/*.yaml`` into the ``rules`` model (defaults and named rules).
- ``admission``: at the door (publish patterns, producer clearance, defaults, upgrades).
- ``access``: the one visibility and clearance rule; ``redaction``: marked-field removal.
- ``outbound.judge``: what a subscriber receives; ``reads``: the same rule for the read APIs.
"""
