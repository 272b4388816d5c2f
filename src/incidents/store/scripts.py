"""The Lua scripts the gateway runs in Redis, every one a file under ``store/lua/``.

``load_script(name)`` reads ``store/lua/<name>.lua`` once per process; callers register the
text with their client (``redis.register_script``), which runs it by its SHA.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_script(name: str) -> str:
    """The source of ``store/lua/<name>.lua`` (read once, then kept)."""
    return resources.files("incidents.store").joinpath("lua", f"{name}.lua").read_text()
