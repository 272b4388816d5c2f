"""One open stream: what it resumes from, the events it sends, heartbeats, and its end.

Wire format (Server-Sent Events):

- an event: ``id: <gateway sequence>``, ``event: <type>``, ``data: <the structured CloudEvent
  as the caller may see it>`` (withheld events are not sent at all; redacted ones carry
  ``imredacted``, exactly as a delivery would); with several partitions the id is the
  stream's position after the event, each partition's last sequence (``stream.marks``), and
  the events of the partitions are merged by the time they were accepted (each partition's,
  hence each incident's, in order);
- ``: heartbeat`` every ``heartbeat`` seconds;
- ``event: stream.missed`` (first, and only when resuming): the ``Last-Event-ID`` is older than
  the retained stream (or ahead of the gateway's sequence), so events may have been missed;
  its ``id`` is where the stream resumes and its ``data`` says why;
- the stream ends with a comment when the client fell behind (``: fell behind``) or the server
  is shutting down (``: closing``); the client reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from incidents.errors import StoreUnavailable
from incidents.model.cloudevent import StoredEvent
from incidents.queries.visibility import Viewer
from incidents.store.events import EventStore
from incidents.stream.hub import End, Entry, StreamHub, Subscriber
from incidents.stream.marks import Mark, next_sequence
from incidents.stream.selection import Selection
from incidents.stream.tail import stream_heads

log = logging.getLogger("incidents.stream")

MISSED = "stream.missed"
CONTENT_TYPE = "text/event-stream; charset=utf-8"
BACKFILL_CHUNK = 256


def message(sequence: int | str, event_type: str, data: bytes) -> bytes:
    return b"id: %s\n%s" % (str(sequence).encode(), body(event_type, data))


def body(event_type: str, data: bytes) -> bytes:
    """A message without its ``id`` line."""
    # A type cannot hold a line break (ingest validates it); never let one split a message.
    kind = event_type.replace("\r", " ").replace("\n", " ").encode()
    return b"event: %s\ndata: %s\n\n" % (kind, data)


def comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"


HEARTBEAT = comment("heartbeat")
ENDINGS = {
    End.BEHIND: "fell behind; reconnect with Last-Event-ID to resume",
    End.CLOSED: "closing; reconnect with Last-Event-ID to resume",
}


@dataclass(frozen=True)
class Resume:
    """Where a resumed stream starts: after ``after``, catching up to ``upto`` from the event
    store before going live; ``missed`` explains a resume point the stream no longer holds."""

    after: Mark
    upto: Mark
    missed: bytes = b""


async def resume_plan(store: EventStore, last_event_id: Mark) -> Resume:
    """Read after subscribing: every event up to the sequences read here is in the store,
    and every later one reaches the subscriber's queue. Per partition: a mark ahead of its
    sequence resumes at that sequence, one older than its retained stream at the oldest
    retained event, either said by ``stream.missed``."""
    layout = store.layout
    lasts = await store.last_sequences()
    heads = await stream_heads(store)
    after: list[int] = []
    why: list[str] = []
    for space, asked, last, head in zip(layout, last_event_id.sequences, lasts, heads, strict=True):
        where = "" if layout.count == 1 else f" (partition {space.partition})"
        if asked > last:
            after.append(last)
            why.append(f"Last-Event-ID {asked} is ahead of the gateway's sequence ({last}){where}")
            continue
        start = head.oldest if head.oldest is not None else next_sequence(layout, space, last)
        if next_sequence(layout, space, asked) >= start:
            after.append(asked)
            continue
        resumes = start - layout.count  # the sequence before the oldest retained
        after.append(resumes)
        why.append(f"events after {asked} up to {resumes} are no longer retained{where}")
    upto = Mark(tuple(lasts))
    if not why:
        return Resume(last_event_id, upto)
    resumed = Mark(tuple(after))
    return Resume(resumed, upto.joined(resumed), _missed(last_event_id, resumed, "; ".join(why)))


def _missed(last_event_id: Mark, resumes_after: Mark, detail: str) -> bytes:
    if len(last_event_id.sequences) == 1:  # the sequences themselves, as always
        asked: object = last_event_id.sequences[0]
        resumes: object = resumes_after.sequences[0]
    else:
        asked, resumes = last_event_id.encode(), resumes_after.encode()
    body = {"last_event_id": asked, "resumes_after": resumes, "detail": detail}
    return message(resumes_after.encode(), MISSED, orjson.dumps(body))


class StreamSession:
    def __init__(
        self,
        hub: StreamHub,
        subscriber: Subscriber,
        viewer: Viewer,
        selection: Selection,
        resume: Resume | None,
    ) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.viewer = viewer
        self.selection = selection
        self.resume = resume
        self.layout = hub.store.layout
        # Skip live events up to here (sent while catching up); what the ids say.
        self.sent = resume.upto if resume is not None else Mark.start(self.layout.count)

    def shown(self, entry: Entry) -> bytes | None:
        """The SSE message of an event as this caller may see it (None: not at all),
        rendered once per principal however many of its streams are open (but its id)."""
        principal = self.viewer.principal
        if principal in entry.shown:
            rendered = entry.shown[principal]
        else:
            visible = self.viewer.event(entry.stored)
            if visible is None:
                rendered = None
            else:
                rendered = body(visible.event.type, orjson.dumps(visible.event.to_dict()))
            entry.shown[principal] = rendered
        if rendered is None:
            return None
        return b"id: %s\n%s" % (self._id(entry).encode(), rendered)

    def _id(self, entry: Entry) -> str:
        """The id of ``entry``'s message: its sequence with one partition; with several,
        the stream's mark after it."""
        if self.layout.count == 1:
            return str(entry.stored.sequence)
        return self.sent.encode()

    async def run(self, send: Send) -> None:
        try:
            if self.resume is not None:
                await self._catch_up(self.resume, send)
            await self._live(send)
        except StoreUnavailable as exc:
            await _body(send, comment(f"{exc.detail}; reconnect with Last-Event-ID to resume"))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _catch_up(self, resume: Resume, send: Send) -> None:
        if resume.missed:
            await _body(send, resume.missed)
        store = self.hub.store
        layout = self.layout
        after = list(resume.after.sequences)
        self.sent = resume.after
        while True:
            chunks = []
            for space, at, upto in zip(layout, after, resume.upto.sequences, strict=True):
                first = next_sequence(layout, space, at)
                chunks.append(list(range(first, upto + 1, layout.count))[:BACKFILL_CHUNK])
            wanted = [seq for chunk in chunks for seq in chunk]
            if not wanted:
                break
            for space, chunk in zip(layout, chunks, strict=True):
                if chunk:
                    after[space.partition] = chunk[-1]
            found = await store.get_many(wanted)
            if layout.count > 1:  # each partition's in order, merged by the time accepted
                by_partition: list[list[StoredEvent]] = [[] for _ in layout]
                for stored in found:
                    by_partition[layout.of_sequence(stored.sequence).partition].append(stored)
                found = list(heapq.merge(*by_partition, key=lambda s: s.ingested_at))
            out = []
            for stored in found:
                self.sent = self.sent.after(layout, stored.sequence)
                if self.selection.matches(stored.event):
                    shown = self.shown(Entry(stored))
                    if shown is not None:
                        out.append(shown)
            if out:
                await _body(send, b"".join(out))
        self.sent = resume.upto

    async def _live(self, send: Send) -> None:
        queue = self.subscriber.queue
        loop = asyncio.get_running_loop()
        interval = self.hub.options.heartbeat
        beat = loop.time() + interval
        while True:
            try:
                async with asyncio.timeout_at(beat):
                    first = await queue.get()
            except TimeoutError:
                beat = max(beat + interval, loop.time())
                await _body(send, HEARTBEAT)
                continue
            items = [first]
            while not queue.empty():  # everything waiting goes out in one write
                items.append(queue.get_nowait())
            out = []
            ending: End | None = None
            for item in items:
                if isinstance(item, End):
                    ending = item
                    break
                if self.sent.passed(self.layout, item.stored.sequence):
                    continue  # already sent while catching up
                self.sent = self.sent.after(self.layout, item.stored.sequence)
                if item.mark is not None:
                    self.sent = self.sent.joined(item.mark)
                shown = self.shown(item)
                if shown is not None:
                    out.append(shown)
            if ending is not None:
                out.append(comment(ENDINGS[ending]))
            if out:
                await _body(send, b"".join(out))
            if ending is not None:
                return


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStreamResponse(Response):
    """``text/event-stream`` for one session; a client that goes away ends it at once (the
    ASGI receive is watched, not only failed writes), and its subscriber is freed."""

    def __init__(self, session: StreamSession) -> None:
        # Not Response.__init__: it would announce a Content-Length for the empty body.
        self.status_code = 200
        self.media_type = CONTENT_TYPE
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.session = session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            stream = asyncio.create_task(session.run(send))
            watch = asyncio.create_task(_until_disconnected(receive))
            try:
                await asyncio.wait({stream, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stream, watch):
                    task.cancel()
                results = await asyncio.gather(stream, watch, return_exceptions=True)
            failure = results[0]
            if isinstance(failure, Exception) and not isinstance(failure, OSError):
                log.error("live stream failed", exc_info=failure)
        finally:
            session.hub.unsubscribe(session.subscriber)
