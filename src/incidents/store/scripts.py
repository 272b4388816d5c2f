"""The Lua scripts the gateway runs in Redis, every one a file under ``store/lua/``.

``load_script(name)`` reads ``store/lua/<name>.lua`` once per process; callers register the
text with their client (``redis.register_script``), which runs it by its SHA. A line
``--! include <name>`` stands for the text of ``store/lua/<name>.lua`` (code several scripts
share, written once). :func:`in_pipeline` queues a script in a pipeline, on one Redis or a
cluster.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from incidents.store.redis_cluster import is_cluster_pipeline


@cache
def load_script(name: str) -> str:
    """The source of ``store/lua/<name>.lua`` with its includes (read once, then kept)."""
    text = resources.files("incidents.store").joinpath("lua", f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: load_script(m.group(1)), text)


_INCLUDE = re.compile(r"^--! include ([a-z_]+)$", re.MULTILINE)


def in_pipeline(pipe: Any, script: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> None:
    """Queue a registered script (``redis.register_script``) in the blocking pipeline
    ``pipe``. On one Redis, by its SHA as redis-py does (the pipeline loads the script first).
    On a Redis Cluster, as its text (``EVAL``): a cluster's pipeline cannot load a script
    first, and a replica that took over from a primary does not hold the scripts the primary
    had loaded, so a SHA would be answered ``NOSCRIPT``. Redis keeps the compiled script
    either way."""
    if is_cluster_pipeline(pipe):
        pipe.eval(script.script, len(keys), *keys, *args)
    else:
        script(keys=list(keys), args=list(args), client=pipe)


async def in_pipeline_async(
    pipe: Any, script: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()
) -> None:
    """As :func:`in_pipeline`, for an asyncio pipeline."""
    if is_cluster_pipeline(pipe):
        pipe.eval(script.script, len(keys), *keys, *args)
    else:
        await script(keys=list(keys), args=list(args), client=pipe)
