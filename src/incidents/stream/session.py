"""One open stream: what it resumes from, the events it sends, heartbeats, and its end.

Wire format (Server-Sent Events):

- an event: ``id: <gateway sequence>``, ``event: <type>``, ``data: <the structured CloudEvent
  as the caller may see it>`` (withheld events are not sent at all; redacted ones carry
  ``imredacted``, exactly as a delivery would);
- ``: heartbeat`` every ``heartbeat`` seconds;
- ``event: stream.missed`` (first, and only when resuming): the ``Last-Event-ID`` is older than
  the retained stream (or ahead of the gateway's sequence), so events may have been missed;
  its ``id`` is where the stream resumes and its ``data`` says why;
- the stream ends with a comment when the client fell behind (``: fell behind``) or the server
  is shutting down (``: closing``); the client reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from incidents.errors import StoreUnavailable
from incidents.queries.visibility import Viewer
from incidents.store.events import EventStore
from incidents.stream.hub import End, Entry, StreamHub, Subscriber
from incidents.stream.selection import Selection
from incidents.stream.tail import stream_head

log = logging.getLogger("incidents.stream")

MISSED = "stream.missed"
CONTENT_TYPE = "text/event-stream; charset=utf-8"
BACKFILL_CHUNK = 256


def message(sequence: int, event_type: str, data: bytes) -> bytes:
    # A type cannot hold a line break (ingest validates it); never let one split a message.
    kind = event_type.replace("\r", " ").replace("\n", " ").encode()
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (sequence, kind, data)


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

    after: int
    upto: int
    missed: bytes = b""


async def resume_plan(store: EventStore, last_event_id: int) -> Resume:
    """Read after subscribing: every event up to the sequence read here is in the store,
    and every later one reaches the subscriber's queue."""
    last = await store.last_sequence()
    _, oldest = await stream_head(store)
    if last_event_id > last:
        why = f"Last-Event-ID {last_event_id} is ahead of the gateway's sequence ({last})"
        return Resume(last, last, _missed(last_event_id, last, why))
    start = oldest if oldest is not None else last + 1  # the oldest sequence still retained
    if last_event_id + 1 >= start:
        return Resume(last_event_id, last)
    why = f"events after {last_event_id} up to {start - 1} are no longer retained"
    return Resume(start - 1, last, _missed(last_event_id, start - 1, why))


def _missed(last_event_id: int, resumes_after: int, detail: str) -> bytes:
    body = {"last_event_id": last_event_id, "resumes_after": resumes_after, "detail": detail}
    return message(resumes_after, MISSED, orjson.dumps(body))


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
        self.sent = resume.upto if resume is not None else 0  # skip live events up to here

    def shown(self, entry: Entry) -> bytes | None:
        """The SSE message of an event as this caller may see it (None: not at all),
        rendered once per principal however many of its streams are open."""
        principal = self.viewer.principal
        if principal in entry.shown:
            return entry.shown[principal]
        visible = self.viewer.event(entry.stored)
        if visible is None:
            rendered = None
        else:
            data = orjson.dumps(visible.event.to_dict())
            rendered = message(entry.stored.sequence, visible.event.type, data)
        entry.shown[principal] = rendered
        return rendered

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
        for start in range(resume.after + 1, resume.upto + 1, BACKFILL_CHUNK):
            stop = min(start + BACKFILL_CHUNK, resume.upto + 1)
            chunk = []
            for stored in await store.get_many(list(range(start, stop))):
                if self.selection.matches(stored.event):
                    shown = self.shown(Entry(stored))
                    if shown is not None:
                        chunk.append(shown)
            if chunk:
                await _body(send, b"".join(chunk))

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
                if item.stored.sequence <= self.sent:
                    continue  # already sent while catching up
                shown = self.shown(item)
                if shown is not None:
                    out.append(shown)
                self.sent = item.stored.sequence
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
