"""A worker's RQ command listener stops at once with the worker."""

from __future__ import annotations

import threading
from typing import Any

import redis

from incidents.settings import Settings
from incidents.worker.process import make_worker
from tests.support import wait_for


def test_a_worker_stops_listening_at_once_when_the_unsubscribe_reply_is_read_first(
    settings: Settings,
) -> None:
    """Unsubscribing returns promptly even when the listener reads the UNSUBSCRIBE reply before
    it is stopped (the order a loaded machine often runs; it used to cost a 60 s wait)."""
    assert settings.redis_url is not None
    connection = redis.Redis.from_url(settings.redis_url)
    worker = make_worker(settings, connection)
    try:
        worker.subscribe()
        pubsub, listener = worker.pubsub, worker.pubsub_thread
        assert pubsub is not None and listener is not None
        send = pubsub.unsubscribe

        def unsubscribe_and_let_it_be_read(*args: Any) -> Any:
            sent = send(*args)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            # Held until the listener has read the reply, or has stopped without reading it.
            wait_for(lambda: not pubsub.subscribed or not listener.is_alive(), 10)
            return sent

        pubsub.unsubscribe = unsubscribe_and_let_it_be_read  # type: ignore[method-assign]  # the race, made certain
        stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
        stopping.start()
        stopping.join(15)  # far past what a prompt stop takes, far short of the old 60 s
        assert not stopping.is_alive(), "unsubscribing waited out the listener's poll"
        assert not listener.is_alive()
    finally:
        connection.close()
