"""The ``incidents`` command."""
