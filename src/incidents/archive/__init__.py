"""What the gateway keeps, written out and read back: the archive that retention appends to,
``incidents export`` and ``incidents import``, all in one format (``archive.records``)."""
