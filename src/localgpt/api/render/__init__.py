"""Wire formats: each one a renderer over the same events.

A renderer is a listener of the fold (``providers.events.Reply``) and of the assistant's own
events (``agent.events.TurnListener``): ``render`` feeds it a batch of events and returns the
bytes they make in its format; ``end`` closes a stream that went well, ``error`` one that
failed after its first byte. ``render_stream`` drives any of them. To serve another wire
format, write a ``StreamRenderer`` here (mypy refuses one that misses an event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import Any

from localgpt.agent.events import AgentBatches, AgentEvent, KeepAlive, ToolEnd, ToolStart, dispatch
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Finish, Reply, TextDelta, ToolCall, ToolCallDelta, Usage

log = logging.getLogger("localgpt.api")
MODEL_EVENTS = (TextDelta, ToolCallDelta, Finish, Usage)
Observer = Callable[[float | None, Usage | None], None]  # (seconds to first content, usage)
INTERNAL = ProviderError(
    "The server had an error while processing your request.",
    status=500,
    type="server_error",
    code="internal_error",
)


class StreamRenderer(ABC):
    """Turns batches of events into one wire format's bytes.

    Subclasses implement every listener method (``on_text`` ... ``on_keepalive``), writing
    what they produce with ``emit``; a new kind of event adds an abstract method, and mypy
    then refuses every renderer that does not handle it.
    """

    def __init__(self) -> None:
        self.reply = Reply(self)
        self._out: list[bytes] = []

    def emit(self, data: bytes) -> None:
        self._out.append(data)

    def start(self) -> bytes:
        """What a stream may send before the model's first events (``late_stream``)."""
        return self.render(())

    def render(self, events: Sequence[AgentEvent]) -> bytes:
        reply = self.reply
        for event in events:
            if isinstance(event, MODEL_EVENTS):  # the hot path: straight to the fold
                reply.feed(event)
            else:
                dispatch(event, reply, self)
        out = b"".join(self._out)
        self._out.clear()
        return out

    @abstractmethod
    def on_text(self, choice: int, text: str, logprobs: Any) -> None: ...

    @abstractmethod
    def on_call(
        self, choice: int, position: int, call: ToolCall, piece: str, first: bool
    ) -> None: ...

    @abstractmethod
    def on_finish(self, choice: int, reason: str) -> None: ...

    @abstractmethod
    def on_usage(self, usage: Usage) -> None: ...

    @abstractmethod
    def on_tool_start(self, event: ToolStart) -> None: ...

    @abstractmethod
    def on_tool_end(self, event: ToolEnd) -> None: ...

    @abstractmethod
    def on_keepalive(self) -> None: ...

    @abstractmethod
    def end(self) -> bytes:
        """What closes a stream that went well."""

    @abstractmethod
    def error(self, exc: ProviderError) -> bytes:
        """What ends a stream that failed after its first byte: never a silent end."""


CONTENT = (TextDelta, ToolCallDelta)


async def render_stream(
    batches: AsyncGenerator[Sequence[AgentEvent], None],
    renderer: StreamRenderer,
    observe: Observer | None = None,
    started: float = 0.0,
) -> AsyncGenerator[bytes, None]:
    """A reply's stream in the renderer's format, with its time to first content (content,
    not a role chunk or a ping) and usage reported to ``observe`` at the end."""
    first: float | None = None
    try:
        async for batch in batches:
            if first is None and any(isinstance(e, CONTENT) for e in batch):
                first = time.perf_counter() - started
            data = renderer.render(batch)
            if data:
                yield data
    except ProviderError as exc:
        yield renderer.error(exc)
        return
    except Exception:
        log.exception("stream failed")
        yield renderer.error(INTERNAL)
        return
    finally:
        await batches.aclose()
        if observe is not None:
            observe(first, renderer.reply.usage)
    yield renderer.end()


PING_EVERY = 10.0  # seconds between keep-alives while the model has not started


async def late_stream(
    opening: asyncio.Future[tuple[str, AgentBatches]],
    renderer: StreamRenderer,
    observer: Callable[[str], Observer],
    started: float,
    ping_every: float = PING_EVERY,
) -> AsyncGenerator[bytes, None]:
    """A stream answered before its model has started: the renderer's opening, keep-alives
    until ``opening`` gives the model's name and events, then those (``render_stream``).
    For clients whose idle timers are shorter than a long prompt's evaluation on a CPU; a
    failure to start is then the stream's error event, not an HTTP status."""
    handed_over = False
    try:
        yield renderer.start()
        while not opening.done():
            done, _ = await asyncio.wait({opening}, timeout=ping_every)
            if not done:
                yield renderer.render((KeepAlive(),))
        try:
            model, batches = opening.result()
        except ProviderError as exc:
            yield renderer.error(exc)
            return
        except Exception:
            log.exception("stream failed to start")
            yield renderer.error(INTERNAL)
            return
        handed_over = True
        async for chunk in render_stream(batches, renderer, observer(model), started):
            yield chunk
    finally:
        if not handed_over:
            opening.cancel()
            opening.add_done_callback(_discard)


_closing: set[asyncio.Future[None]] = set()


def _discard(opening: asyncio.Future[tuple[str, AgentBatches]]) -> None:
    """Close a stream that opened after its client left (it holds a provider slot)."""
    if not opening.cancelled() and opening.exception() is None:
        closing = asyncio.ensure_future(opening.result()[1].aclose())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)


async def stream_when_open(
    opening: Coroutine[Any, Any, tuple[str, AgentBatches]],
    renderer: StreamRenderer,
    observer: Callable[[str], Observer],
    started: float,
    patience: float,
) -> AsyncGenerator[bytes, None]:
    """The stream of a reply being opened: rendered as usual if the model starts within
    ``patience`` seconds (a failure to start is then the route's HTTP error), else a
    ``late_stream`` that starts now."""
    task = asyncio.ensure_future(opening)
    try:
        done, _ = await asyncio.wait({task}, timeout=patience)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_discard)
        raise
    if done:
        model, batches = task.result()
        return render_stream(batches, renderer, observer(model), started)
    return late_stream(task, renderer, observer, started, patience)
