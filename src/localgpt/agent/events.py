"""Events the assistant adds to a provider's stream while it runs its own tools, and the one
dispatch that every consumer of an assistant's reply goes through.

The OpenAI-compatible APIs show none of the assistant's own events in their chunks: they turn
``KeepAlive`` into an SSE comment and drop the rest. The native session stream shows tool
activity as upstream's ``tool_start`` and ``tool_end`` events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol, assert_never

from localgpt.providers.events import (
    Completion,
    Finish,
    Reply,
    ReplyListener,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from localgpt.providers.messages import ChatMessage


@dataclass(slots=True)
class ToolStart:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolEnd:
    id: str
    name: str
    output: str
    error: bool = False


@dataclass(slots=True)
class KeepAlive:
    """Sent while tools run, so that clients and proxies do not time the stream out."""


AgentEvent = StreamEvent | ToolStart | ToolEnd | KeepAlive
AgentBatches = AsyncGenerator[Sequence[AgentEvent], None]


class TurnListener(ReplyListener, Protocol):
    """A consumer of an assistant's reply: the model's words (``ReplyListener``) and the
    assistant's own tool activity."""

    def on_tool_start(self, event: ToolStart) -> None: ...

    def on_tool_end(self, event: ToolEnd) -> None: ...

    def on_keepalive(self) -> None: ...


def dispatch(event: AgentEvent, reply: Reply, listener: TurnListener | None) -> None:
    """Hand one event to the fold (the model's) or to the listener (the assistant's)."""
    match event:
        case TextDelta():  # the most frequent, first
            reply.feed(event)
        case ToolCallDelta() | Finish() | Usage():
            reply.feed(event)
        case ToolStart():
            if listener is not None:
                listener.on_tool_start(event)
        case ToolEnd():
            if listener is not None:
                listener.on_tool_end(event)
        case KeepAlive():
            if listener is not None:
                listener.on_keepalive()
        case _:
            assert_never(event)


async def collect_reply(batches: AgentBatches) -> Completion:
    """A whole reply of the assistant, gathered from its stream."""
    reply = Reply()
    try:
        async for batch in batches:
            for event in batch:
                dispatch(event, reply, None)
    finally:
        await batches.aclose()
    return reply.completion()


def tool_message(call_id: str, output: str) -> ChatMessage:
    return {"role": "tool", "tool_call_id": call_id, "content": output}
