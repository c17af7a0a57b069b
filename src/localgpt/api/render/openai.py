"""OpenAI's Chat Completions and legacy Completions, rendered straight to bytes.

The stream renderer is where every provider's events meet OpenAI's stream invariants: a role
chunk first, tool calls introduced once with id and name then continued by argument pieces,
exactly one finish reason per choice (``tool_calls`` when the reply ends in tool calls), the
usage chunk only when asked for, and an error event instead of a silent end. Chunks are
assembled from pre-rendered bytes: building objects for each would cost more than the rest
of a proxied request.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from localgpt.agent.events import ToolEnd, ToolStart
from localgpt.api.render import Observer, StreamRenderer
from localgpt.providers.base import EventBatches, collect
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Completion, Finish, ToolCall, Usage


def completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def usage_dict(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        usage = Usage(0, 0)
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


def error_event(exc: ProviderError) -> bytes:
    return b"data: " + orjson.dumps({"error": exc.to_dict()}) + b"\n\n"


def render_completion(completion: Completion, model: str, created: int | None = None) -> bytes:
    choices = []
    for i, choice in enumerate(completion.choices):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.content,
            "refusal": None,
        }
        reason = choice.finish_reason
        if choice.tool_calls:
            message["tool_calls"] = [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.name, "arguments": tc.arguments},
                }
                for tc in choice.tool_calls
            ]
            if reason == "stop":
                reason = "tool_calls"
        choices.append(
            {"index": i, "message": message, "logprobs": choice.logprobs, "finish_reason": reason}
        )
    return orjson.dumps(
        {
            "id": completion_id(),
            "object": "chat.completion",
            "created": created or int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage_dict(completion.usage),
            "system_fingerprint": None,
        }
    )


class OpenAIStream(StreamRenderer):
    """What OpenAI's two streams share: each chunk is a fixed head with its ``choices``
    spliced in; the end closes open choices, adds the usage chunk when asked for, then
    ``[DONE]``; a failure is an ``error`` event."""

    def __init__(self, head: dict[str, Any], include_usage: bool) -> None:
        super().__init__()
        data = orjson.dumps(head)
        self._prefix = b"data: " + data[:-1] + b',"choices":['
        self._suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        self._include_usage = include_usage

    def _open_choices(self) -> list[int]:
        """The choices the end must close if the model did not."""
        return sorted(self.reply.choices) or [0]

    def end(self) -> bytes:
        reply = self.reply
        for choice in self._open_choices():
            if not reply.finished(choice):
                reply.feed(Finish("stop", choice))
        out = [self.render(())]
        if self._include_usage:
            out.append(
                self._prefix + b'],"usage":' + orjson.dumps(usage_dict(reply.usage)) + b"}\n\n"
            )
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def error(self, exc: ProviderError) -> bytes:
        return error_event(exc)


class ChatChunks(OpenAIStream):
    """One chat completion stream (``chat.completion.chunk`` events)."""

    def __init__(self, model: str, include_usage: bool) -> None:
        head = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        super().__init__(head, include_usage)
        self._started: set[int] = set()

    def _open_choices(self) -> list[int]:
        return sorted(self._started) or [0]

    def _chunk(self, choice: int, delta: bytes, finish: str | None = None) -> bytes:
        reason = b"null" if finish is None else b'"' + finish.encode() + b'"'
        return b"".join(
            (
                self._prefix,
                b'{"index":',
                str(choice).encode(),
                b',"delta":',
                delta,
                b',"logprobs":null,"finish_reason":',
                reason,
                b"}",
                self._suffix,
            )
        )

    def _start(self, choice: int) -> None:
        if choice not in self._started:
            self._started.add(choice)
            self.emit(self._chunk(choice, b'{"role":"assistant","content":""}'))

    def on_text(self, choice: int, text: str, logprobs: Any) -> None:
        if choice not in self._started:
            self._start(choice)
        chunk = self._chunk(choice, b'{"content":' + orjson.dumps(text) + b"}")
        if logprobs is not None:
            chunk = chunk.replace(
                b',"logprobs":null,', b',"logprobs":' + orjson.dumps(logprobs) + b",", 1
            )
        self._out.append(chunk)

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        self._start(choice)
        if first:
            head = {
                "index": position,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            self.emit(self._chunk(choice, b'{"tool_calls":[' + orjson.dumps(head) + b"]}"))
        if piece:
            more = {"index": position, "function": {"arguments": piece}}
            self.emit(self._chunk(choice, b'{"tool_calls":[' + orjson.dumps(more) + b"]}"))

    def on_finish(self, choice: int, reason: str) -> None:
        self._start(choice)
        self.emit(self._chunk(choice, b"{}", reason))

    def on_usage(self, usage: Usage) -> None:
        pass  # summed by the fold, sent by ``end``

    def on_tool_start(self, event: ToolStart) -> None:
        pass  # the server's own tools are not the client's business

    def on_tool_end(self, event: ToolEnd) -> None:
        pass

    def on_keepalive(self) -> None:
        self.emit(b": keep-alive\n\n")  # an SSE comment: no chunk, no new field


class TextChunks(OpenAIStream):
    """The legacy ``text_completion`` stream: text pieces per choice, one finish each."""

    def __init__(self, model: str, include_usage: bool) -> None:
        head = {
            "id": "cmpl-" + os.urandom(12).hex(),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        super().__init__(head, include_usage)

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return self._prefix + orjson.dumps(choice) + self._suffix

    def on_text(self, choice: int, text: str, logprobs: Any) -> None:
        self.emit(
            self._chunk(
                {"text": text, "index": choice, "logprobs": logprobs, "finish_reason": None}
            )
        )

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        pass  # a text completion has no tool calls

    def on_finish(self, choice: int, reason: str) -> None:
        self.emit(
            self._chunk({"text": "", "index": choice, "logprobs": None, "finish_reason": reason})
        )

    def on_usage(self, usage: Usage) -> None:
        pass

    def on_tool_start(self, event: ToolStart) -> None:
        pass

    def on_tool_end(self, event: ToolEnd) -> None:
        pass

    def on_keepalive(self) -> None:
        pass


async def collect_text(
    batches: EventBatches, model: str, observe: Observer | None = None, started: float = 0.0
) -> bytes:
    """A whole legacy completion, gathered from its stream."""
    completion = await collect(batches)
    if observe is not None:
        observe(time.perf_counter() - started, completion.usage)
    return orjson.dumps(
        {
            "id": "cmpl-" + os.urandom(12).hex(),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "text": choice.content or "",
                    "index": choice.index,
                    "logprobs": choice.logprobs,
                    "finish_reason": choice.finish_reason,
                }
                for choice in completion.choices
            ],
            "usage": usage_dict(completion.usage),
        }
    )
