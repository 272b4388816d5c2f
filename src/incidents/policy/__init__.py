"""Where events are judged: principals, policy files, data class and visibility."""
