"""CPU-heavy work on a large input runs in a worker thread, so one big request cannot stop
the event loop from serving every other client meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(large: bool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``: in a worker thread when the input is ``large``, inline
    otherwise (a thread hop costs more than small work)."""
    if not large:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
