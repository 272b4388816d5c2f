"""The worker: its process, the jobs it runs, the scheduler that enqueues them, and the
dispatcher that follows the outbox (``routing``) and works the delivery lanes (``delivery``)."""
