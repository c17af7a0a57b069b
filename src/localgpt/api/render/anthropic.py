"""Anthropic's Messages stream: ``message_start``; content blocks one after another, each
``content_block_start``, its deltas (``text_delta``, ``input_json_delta``) and
``content_block_stop``, with indices 0, 1, 2... in order; ``message_delta`` with the stop
reason and the usage; ``message_stop``. ``ping`` keeps a slow start alive, and a failure
after the first byte is an ``error`` event. Every event has its ``event:`` line, which the
SDK needs.

Blocks cannot interleave, but an upstream's parallel tool calls may: a call streams live
while it is the only one open; one that begins while another's arguments are still
incomplete JSON waits, and is sent whole when the model finishes. So two calls never share
a block, whatever order their pieces came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from localgpt.agent.events import AgentEvent, ToolEnd, ToolStart
from localgpt.api.anthropic.convert import stop_reason, tool_use_id, usage_object
from localgpt.api.anthropic.errors import error_type
from localgpt.api.render import StreamRenderer
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Finish, ToolCall, Usage
from localgpt.providers.stops import StopWatch


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def usage_of(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage(0, 0)
    return usage_object(
        usage.prompt_tokens, usage.completion_tokens, cached_tokens=usage.cached_tokens or 0
    )


def _complete_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class MessageEvents(StreamRenderer):
    """One message as Anthropic's events, for the model name the client asked for.
    ``input_tokens`` is the prompt's estimated size for ``message_start`` (the exact
    count, once known, is in ``message_delta``); ``stops`` says which stop sequence, if
    any, ended the reply."""

    def __init__(
        self,
        model: str,
        message_id: str,
        input_tokens: int = 0,
        stops: StopWatch | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.id = message_id
        self.input_tokens = input_tokens
        self.stops = stops
        self._started = False
        self._index = -1  # of the last block started
        self._text_open = False  # the open block is text
        self._live: int | None = None  # the position of the call whose block is open
        self._waiting: list[int] = []  # calls to send whole at the end
        self._text_prefix = b""
        self._finish: str | None = None

    # --- blocks -----------------------------------------------------------------------------

    def _begin(self) -> None:
        self._started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_object(self.input_tokens, 0),
        }
        self.emit(event("message_start", {"message": message}))

    def render(self, events: Sequence[AgentEvent]) -> bytes:
        if not self._started:
            self._begin()
        return super().render(events)

    def _close_block(self) -> None:
        if self._text_open or self._live is not None:
            self.emit(event("content_block_stop", {"index": self._index}))
            self._text_open = False
            self._live = None

    def _start_block(self, block: dict[str, Any]) -> None:
        self._close_block()
        self._index += 1
        self.emit(event("content_block_start", {"index": self._index, "content_block": block}))

    def _tool_block(self, call: ToolCall) -> None:
        self._start_block(
            {"type": "tool_use", "id": tool_use_id(call.id), "name": call.name, "input": {}}
        )

    def _json_delta(self, piece: str) -> None:
        delta = {"type": "input_json_delta", "partial_json": piece}
        self.emit(event("content_block_delta", {"index": self._index, "delta": delta}))

    # --- the reply's events -----------------------------------------------------------------

    def on_text(self, choice: int, text: str, logprobs: Any) -> None:
        if not self._text_open:
            self._start_block({"type": "text", "text": ""})
            self._text_open = True
            self._text_prefix = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                + str(self._index).encode()
                + b',"delta":{"type":"text_delta","text":'
            )
        self._out.append(self._text_prefix + orjson.dumps(text) + b"}}\n\n")

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        if first:
            live = self._live
            busy = live is not None and not _complete_json(
                self.reply.said(choice).calls[live].arguments
            )
            if busy or self._waiting:
                self._waiting.append(position)  # sent whole when the model finishes
                return
            self._tool_block(call)
            self._live = position
            self._json_delta("")  # as Anthropic starts one
        if piece and position == self._live:
            self._json_delta(piece)

    def on_finish(self, choice: int, reason: str) -> None:
        self._finish = reason
        self._close_block()
        calls = self.reply.said(choice).calls
        for position in self._waiting:
            self._tool_block(calls[position])
            self._live = position
            self._json_delta(calls[position].arguments)
            self._close_block()
        self._waiting.clear()

    def on_usage(self, usage: Usage) -> None:
        pass  # summed by the fold, sent in message_delta

    def on_tool_start(self, event: ToolStart) -> None:
        pass  # the server's own tools are not the client's blocks

    def on_tool_end(self, event: ToolEnd) -> None:
        pass

    def on_keepalive(self) -> None:
        self.emit(b'event: ping\ndata: {"type":"ping"}\n\n')

    # --- the end --------------------------------------------------------------------------

    def stop(self) -> tuple[str | None, str | None]:
        """``(stop_reason, stop_sequence)`` of the reply as it ended."""
        matched = self.stops.matched if self.stops is not None else None
        reason = stop_reason(self._finish or "stop", matched)
        if self.reply.said(0).calls and reason not in (None, "max_tokens"):
            reason = "tool_use"
        return reason, matched if reason == "stop_sequence" else None

    def end(self) -> bytes:
        if not self._started:
            self._begin()
        if not self.reply.finished(0):
            self.reply.feed(Finish("stop"))
        reason, sequence = self.stop()
        usage = usage_of(self.reply.usage)
        self.emit(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": {
                        "input_tokens": usage["input_tokens"],
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": usage["cache_read_input_tokens"],
                        "output_tokens": usage["output_tokens"],
                    },
                },
            )
        )
        self.emit(event("message_stop", {}))
        return self.render(())

    def error(self, exc: ProviderError) -> bytes:
        if not self._started:
            self._begin()
        kind = error_type(exc.status)
        self.emit(event("error", {"error": {"type": kind, "message": exc.message}}))
        return self.render(())
