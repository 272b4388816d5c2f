"""The worker: its process, the jobs it runs (which build the router of ``routing`` and the
dispatcher of ``delivery`` and hand them their parts), and the scheduler that enqueues
them."""
