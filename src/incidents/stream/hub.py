"""One reader per process for every open stream.

The hub follows the retained event stream with one blocking read at a time and hands each new
event to the bounded queue of every subscriber that wants it (its selection, and the caller
may see it at all), so a thousand open streams cost one Redis read, not a thousand polls. The
reader starts with the first subscriber and ends within one read timeout after the last one
leaves. A subscriber whose queue is full is told it fell behind and dropped: its stream ends
and the client resumes with ``Last-Event-ID``, losing nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import redis.asyncio as aioredis

from incidents.errors import StoreUnavailable
from incidents.model.cloudevent import StoredEvent
from incidents.model.principal import Principal
from incidents.store.events import EventStore
from incidents.stream.marks import Mark
from incidents.stream.tail import follow, stream_heads

log = logging.getLogger("incidents.stream")


@dataclass(frozen=True)
class StreamOptions:
    heartbeat: float = 15.0  # seconds between heartbeat comments
    queue_size: int = 1000  # events a subscriber may have waiting before it is dropped
    read_block: float = 1.0  # longest blocking read (below the Redis socket timeout)
    read_count: int = 512  # most entries taken in one read


@dataclass
class Entry:
    """One event as the hub handed it out, with what each principal was shown of it (the
    SSE message without its id, or None when withheld), so subscribers with the same
    principal render it once between them. ``mark``: the last sequence of each partition the
    hub had handed out with it (None with one partition: the event's sequence says it)."""

    stored: StoredEvent
    shown: dict[Principal, bytes | None] = field(default_factory=dict)
    mark: Mark | None = None


class End(Enum):
    """Why a subscriber's stream ends (the last item of its queue)."""

    BEHIND = "behind"  # its queue overflowed
    CLOSED = "closed"  # the hub shut down


class Subscriber:
    def __init__(self, wants: Callable[[StoredEvent], bool], size: int) -> None:
        self.wants = wants
        self.size = size
        # One slot more than ``size``: room for the End marker however full it is.
        self.queue: asyncio.Queue[Entry | End] = asyncio.Queue(size + 1)
        self.ended = False

    def offer(self, entry: Entry) -> None:
        if self.ended:
            return
        if self.queue.qsize() >= self.size:
            self.end(End.BEHIND)
        else:
            self.queue.put_nowait(entry)

    def end(self, why: End) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(why)


class StreamHub:
    def __init__(
        self,
        store: EventStore,
        options: StreamOptions | None = None,
        connect: Callable[[], aioredis.Redis] | None = None,
    ) -> None:
        """``store``: where streams catch up from; ``connect``: a Redis connection of the
        reader's own, closed when it stops (None: the reader uses ``store``'s), so a reader
        still finishing its last blocking read never holds the app's connection."""
        self.store = store
        self.options = options or StreamOptions()
        self._connect = connect
        self._subscribers: set[Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def reading(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def subscribe(self, wants: Callable[[StoredEvent], bool]) -> Subscriber:
        """A new subscriber, receiving every event accepted after this call returns (and
        possibly a few before: the caller skips what it has already sent, by sequence).
        Raises StoreUnavailable when the reader cannot start."""
        if self._closed:
            raise StoreUnavailable("the server is shutting down", retry_after=1)
        subscriber = Subscriber(wants, self.options.queue_size)
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self.reading:
                heads = await stream_heads(self.store)
                start = ",".join(h.newest_id for h in heads)
                mark = Mark(tuple(h.newest for h in heads))
                self._reader = asyncio.create_task(self._read(start, mark), name="stream-reader")
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def close(self) -> None:
        """End every stream (each is told to reconnect) and stop the reader."""
        self._closed = True
        for subscriber in list(self._subscribers):
            subscriber.end(End.CLOSED)
        self._subscribers.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, after: str, mark: Mark) -> None:
        own = self._connect() if self._connect is not None else None
        try:
            store = self.store if own is None else EventStore(own, layout=self.store.layout)
            await self._follow(store, after, mark)
        except Exception:  # the streams end and their clients resume, rather than hang
            log.exception("live stream reader failed")
            for subscriber in list(self._subscribers):
                subscriber.end(End.CLOSED)
            self._subscribers.clear()
        finally:
            if own is not None:
                await own.aclose()

    async def _follow(self, store: EventStore, after: str, mark: Mark) -> None:
        layout = store.layout
        pause = 0.0
        while self._subscribers and not self._closed:
            try:
                found = await follow(store, after, self.options.read_count, self.options.read_block)
            except StoreUnavailable as exc:  # keep the streams open; carry on where it stopped
                pause = min(max(pause * 2, 0.25), 5.0)
                log.warning("live stream reader: %s; retrying in %.2fs", exc.detail, pause)
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            for recent in found:
                after = recent.stream_id
                entry = Entry(recent.stored)
                if layout.count > 1:
                    entry.mark = mark = mark.after(layout, recent.stored.sequence)
                for subscriber in list(self._subscribers):
                    if subscriber.ended:
                        self._subscribers.discard(subscriber)
                    elif subscriber.wants(recent.stored):
                        subscriber.offer(entry)
                        if subscriber.ended:
                            self._subscribers.discard(subscriber)
        # Leaving with no subscriber: the next one starts a new reader from the stream's head.
