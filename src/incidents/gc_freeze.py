"""Keeping the garbage collector off the hot path of long-running processes.

A process that has loaded its schemas, policies and compiled validators holds many objects
that live as long as it does. Python's full collections walk all of them again and again:
under load that cost a third of the API's time per event. Once a server process is ready,
those objects are moved out of the collector's view (``gc.freeze``); what requests allocate
afterwards is collected as usual.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect what start-up left behind, then exempt the survivors from later collections."""
    gc.collect()
    gc.freeze()
