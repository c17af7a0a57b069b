"""Server-sent events, and noticing a client that hangs up.

Starlette only notices a disconnect when a write fails, which for a slow model can be long
after the client left; meanwhile the upstream keeps generating. ``DisconnectWatch`` listens
for the disconnect itself and cancels the request's task, so the upstream request is closed
within one event-loop turn of the client leaving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class DisconnectWatch:
    """Cancels the current task when the client disconnects, until ``stop()`` is called.

    Start it only after the request body has been read: from then on the server's
    ``receive`` returns nothing but the disconnect.
    """

    __slots__ = ("_receive", "_task", "_watcher", "disconnected", "stopped")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self.disconnected = False
        self.stopped = False
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        if not self.stopped and self._task is not None:
            self.disconnected = True
            self._task.cancel()

    def stop(self) -> None:
        self.stopped = True
        self._watcher.cancel()

    def absorb(self) -> bool:
        """After a ``CancelledError``: True if it was ours, so the task may carry on."""
        if self.disconnected and self._task is not None:
            self._task.uncancel()
            return True
        return False


class EventStreamResponse(Response):
    """Streams SSE bytes; on a disconnect it stops the producer instead of erroring."""

    def __init__(
        self, body: AsyncGenerator[bytes, None], watch: DisconnectWatch, first: bytes = b""
    ) -> None:
        self.status_code = 200
        self.background = None
        self._body = body
        self._watch = watch
        self._first = first
        self.raw_headers = list(SSE_HEADERS)

    @classmethod
    async def started(
        cls, body: AsyncGenerator[bytes, None], watch: DisconnectWatch
    ) -> EventStreamResponse:
        """Run the body to its first bytes now. A generator that never started cannot run
        its cleanup; once started, closing it reaches every stream it wraps (and frees the
        upstream connection and provider slot), whatever happens to the response."""
        try:
            first = await anext(body)
        except StopAsyncIteration:
            first = b""
        return cls(body, watch, first)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if self._first:
                await send({"type": "http.response.body", "body": self._first, "more_body": True})
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._watch.stop()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._watch.absorb():
                raise
        except OSError:
            pass  # the client went away between two writes
        finally:
            self._watch.stop()
            await self._body.aclose()
