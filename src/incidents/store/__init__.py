"""Where events are kept: Redis, written atomically through Lua scripts."""
