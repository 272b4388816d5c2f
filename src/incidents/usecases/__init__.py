"""What a user does, once for every door: each module holds the operations of one area
(events, incidents, subscriptions, deliveries, silences) as methods that take the caller
(``Principal``) and typed inputs, and return typed results or raise the project's errors
(``incidents.errors``). The HTTP handlers (``api``) and the console's forms call these,
and the adapters hand their events to ``event_submission``; the CLI, a client of the API,
builds a silence as the console does (``silence_actions.silence_document``). Each door
renders the answers and the errors its own way (problem+json, a page's message, a message
and an exit code). Nothing here imports a door or the web toolkit; ``create_app`` builds
each once."""
