"""The Lua scripts the gateway runs in Redis, every one a file under ``store/lua/``.

``load_script(name)`` reads ``store/lua/<name>.lua`` once per process; callers register the
text with their client (``redis.register_script``), which runs it by its SHA. A line
``--! include <name>`` stands for the text of ``store/lua/<name>.lua`` (code several scripts
share, written once).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources


@cache
def load_script(name: str) -> str:
    """The source of ``store/lua/<name>.lua`` with its includes (read once, then kept)."""
    text = resources.files("incidents.store").joinpath("lua", f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: load_script(m.group(1)), text)


_INCLUDE = re.compile(r"^--! include ([a-z_]+)$", re.MULTILINE)
