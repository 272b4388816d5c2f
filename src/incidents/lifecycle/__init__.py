"""The incident lifecycle: the state machine, the planner that applies it atomically with each
accepted event, and the read API over materialized incidents."""
