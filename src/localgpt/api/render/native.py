"""LocalGPT's native session stream: upstream's SSE events ``session``, ``content`` (``delta``),
``tool_start`` (``name``, ``id``, and here also ``arguments``), ``tool_end`` (``name``,
``id``, ``output``), ``done`` and ``error``. Each is sent both as an SSE event name and as a
``type`` field, so clients that read either work."""

from __future__ import annotations

from typing import Any

import orjson

from localgpt.agent.events import ToolEnd, ToolStart
from localgpt.api.render import StreamRenderer
from localgpt.api.render.openai import usage_dict
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import ToolCall, Usage


def event(kind: str, **data: Any) -> bytes:
    payload = orjson.dumps({"type": kind, **data})
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"


class NativeEvents(StreamRenderer):
    """One session turn as native events; also what a whole turn said (``tools``, the
    reply), for the non-streaming ``/api/chat``."""

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.tools: dict[str, dict[str, Any]] = {}  # the server tools that ran, by call id

    def on_text(self, choice: int, text: str, logprobs: Any) -> None:
        self.emit(event("content", delta=text))

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        pass  # a session has no client tools; the server's are told by tool_start

    def on_finish(self, choice: int, reason: str) -> None:
        pass

    def on_usage(self, usage: Usage) -> None:
        pass  # summed by the fold, sent with ``done``

    def on_tool_start(self, start: ToolStart) -> None:
        self.tools[start.id] = {"id": start.id, "name": start.name, "arguments": start.arguments}
        self.emit(event("tool_start", id=start.id, name=start.name, arguments=start.arguments))

    def on_tool_end(self, end: ToolEnd) -> None:
        self.tools.setdefault(end.id, {"id": end.id, "name": end.name})["output"] = end.output
        self.emit(event("tool_end", id=end.id, name=end.name, output=end.output, error=end.error))

    def on_keepalive(self) -> None:
        self.emit(b": keep-alive\n\n")

    def end(self) -> bytes:
        return event("done", session_id=self.session_id, usage=usage_dict(self.reply.usage))

    def error(self, exc: ProviderError) -> bytes:
        return event("error", message=exc.message, error=exc.to_dict())
