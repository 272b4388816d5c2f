"""Where events enter: HTTP modes, envelope checks, schema validation, acceptance."""
