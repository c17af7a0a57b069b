"""OpenAI's response shapes, rendered straight to bytes.

The stream renderer is also where every provider's events are normalised to OpenAI's stream
invariants: a role chunk first, tool calls introduced once with id and name then continued by
argument pieces, exactly one finish reason per choice (``tool_calls`` when the reply ends in
tool calls), the usage chunk only when asked for, and an error event instead of a silent end.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import orjson

from localgpt.agent.events import AgentEvent, KeepAlive
from localgpt.providers.base import (
    Completion,
    Finish,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

log = logging.getLogger("localgpt.api")
CONTENT = (TextDelta, ToolCallDelta)


def completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def call_id() -> str:
    return "call_" + os.urandom(12).hex()


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


class StreamRenderer:
    """Turns batches of provider events into SSE bytes for one chat completion stream."""

    def __init__(self, model: str, include_usage: bool) -> None:
        created = int(time.time())
        head = orjson.dumps(
            {
                "id": completion_id(),
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
            }
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":['
        self._suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        self._include_usage = include_usage
        self._started: set[int] = set()
        self._finished: set[int] = set()
        # (choice, call index) -> our index for that call within the choice
        self._calls: dict[tuple[int, int], int] = {}
        self._has_calls: set[int] = set()
        self.usage: Usage | None = None

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

    def _start(self, choice: int, out: list[bytes]) -> None:
        if choice not in self._started:
            self._started.add(choice)
            out.append(self._chunk(choice, b'{"role":"assistant","content":""}'))

    def render(self, events: Sequence[AgentEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if isinstance(event, TextDelta):
                if event.choice in self._finished:
                    continue
                self._start(event.choice, out)
                delta = b'{"content":' + orjson.dumps(event.text) + b"}"
                if event.logprobs is None:
                    out.append(self._chunk(event.choice, delta))
                else:
                    chunk = self._chunk(event.choice, delta)
                    out.append(
                        chunk.replace(
                            b',"logprobs":null,',
                            b',"logprobs":' + orjson.dumps(event.logprobs) + b",",
                            1,
                        )
                    )
            elif isinstance(event, ToolCallDelta):
                if event.choice in self._finished:
                    continue
                self._start(event.choice, out)
                self._tool_delta(event, out)
            elif isinstance(event, Finish):
                self._finish(event.choice, event.reason, out)
            elif isinstance(event, Usage):
                self.usage = event if self.usage is None else self.usage + event
            elif isinstance(event, KeepAlive):
                out.append(b": keep-alive\n\n")  # an SSE comment: no chunk, no new field
        return b"".join(out)

    def _tool_delta(self, event: ToolCallDelta, out: list[bytes]) -> None:
        key = (event.choice, event.index)
        index = self._calls.get(key)
        if index is None:
            index = self._calls[key] = sum(1 for c, _ in self._calls if c == event.choice)
            self._has_calls.add(event.choice)
            head = {
                "index": index,
                "id": event.id or call_id(),
                "type": "function",
                "function": {"name": event.name or "", "arguments": ""},
            }
            out.append(self._chunk(event.choice, b'{"tool_calls":[' + orjson.dumps(head) + b"]}"))
        if event.arguments:
            piece = {"index": index, "function": {"arguments": event.arguments}}
            out.append(self._chunk(event.choice, b'{"tool_calls":[' + orjson.dumps(piece) + b"]}"))

    def _finish(self, choice: int, reason: str, out: list[bytes]) -> None:
        if choice in self._finished:
            return
        self._start(choice, out)
        if reason == "stop" and choice in self._has_calls:
            reason = "tool_calls"
        self._finished.add(choice)
        out.append(self._chunk(choice, b"{}", reason))

    def end(self) -> bytes:
        """Close every open choice, add the usage chunk if asked for, then ``[DONE]``."""
        out: list[bytes] = []
        for choice in sorted(self._started - self._finished):
            self._finish(choice, "stop", out)
        if not self._started:
            self._finish(0, "stop", out)
        if self._include_usage:
            out.append(
                self._prefix + b'],"usage":' + orjson.dumps(usage_dict(self.usage)) + b"}\n\n"
            )
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)


class TextStreamRenderer:
    """The legacy ``text_completion`` stream: text pieces per choice, one finish each."""

    def __init__(self, model: str, include_usage: bool) -> None:
        head = orjson.dumps(
            {
                "id": "cmpl-" + os.urandom(12).hex(),
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
            }
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":['
        self._suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        self._include_usage = include_usage
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self.usage: Usage | None = None

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return self._prefix + orjson.dumps(choice) + self._suffix

    def render(self, events: Sequence[AgentEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if isinstance(event, TextDelta) and event.choice not in self._finished:
                self._started.add(event.choice)
                out.append(
                    self._chunk(
                        {
                            "text": event.text,
                            "index": event.choice,
                            "logprobs": event.logprobs,
                            "finish_reason": None,
                        }
                    )
                )
            elif isinstance(event, Finish) and event.choice not in self._finished:
                self._finish(event.choice, event.reason, out)
            elif isinstance(event, Usage):
                self.usage = event if self.usage is None else self.usage + event
        return b"".join(out)

    def _finish(self, choice: int, reason: str, out: list[bytes]) -> None:
        self._started.add(choice)
        self._finished.add(choice)
        out.append(
            self._chunk({"text": "", "index": choice, "logprobs": None, "finish_reason": reason})
        )

    def end(self) -> bytes:
        out: list[bytes] = []
        for choice in sorted(self._started - self._finished) or ([] if self._started else [0]):
            self._finish(choice, "stop", out)
        if self._include_usage:
            out.append(
                self._prefix + b'],"usage":' + orjson.dumps(usage_dict(self.usage)) + b"}\n\n"
            )
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)


async def collect_text(
    batches: AsyncGenerator[list[StreamEvent], None],
    model: str,
    observe: Observer | None = None,
    started: float = 0.0,
) -> bytes:
    """A whole legacy completion, gathered from its stream."""
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str] = {}
    logprobs: dict[int, dict[str, list[Any]]] = {}
    usage: Usage | None = None
    try:
        async for batch in batches:
            for event in batch:
                if isinstance(event, TextDelta):
                    texts.setdefault(event.choice, []).append(event.text)
                    if isinstance(event.logprobs, dict):
                        merged = logprobs.setdefault(event.choice, {})
                        for key, values in event.logprobs.items():
                            merged.setdefault(key, []).extend(values)
                elif isinstance(event, Finish):
                    reasons.setdefault(event.choice, event.reason)
                elif isinstance(event, Usage):
                    usage = event if usage is None else usage + event
    finally:
        await batches.aclose()
    if observe is not None:
        observe(time.perf_counter() - started, usage)
    indices = sorted(set(texts) | set(reasons)) or [0]
    return orjson.dumps(
        {
            "id": "cmpl-" + os.urandom(12).hex(),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "text": "".join(texts.get(i, [])),
                    "index": i,
                    "logprobs": logprobs.get(i),
                    "finish_reason": reasons.get(i, "stop"),
                }
                for i in indices
            ],
            "usage": usage_dict(usage),
        }
    )


def error_event(exc: ProviderError) -> bytes:
    return b"data: " + orjson.dumps({"error": exc.to_dict()}) + b"\n\n"


Observer = Callable[[float | None, Usage | None], None]  # (seconds to first content, usage)


async def render_stream(
    batches: AsyncGenerator[Sequence[AgentEvent], None],
    renderer: StreamRenderer | TextStreamRenderer,
    observe: Observer | None = None,
    started: float = 0.0,
) -> AsyncGenerator[bytes, None]:
    first: float | None = None
    try:
        async for batch in batches:
            if first is None and any(isinstance(e, CONTENT) for e in batch):
                first = time.perf_counter() - started  # content, not a role chunk or a ping
            data = renderer.render(batch)
            if data:
                yield data
    except ProviderError as exc:
        yield error_event(exc)
        return
    except Exception:
        log.exception("stream failed")
        yield error_event(
            ProviderError(
                "The server had an error while processing your request.",
                status=500,
                type="server_error",
                code="internal_error",
            )
        )
        return
    finally:
        await batches.aclose()
        if observe is not None:
            observe(first, renderer.usage)
    yield renderer.end()
