"""OpenAI's chat completion shapes, parsed into provider events.

Shared by the OpenAI-compatible provider and the embedded llama.cpp runtime, which answers
in the same format.
"""

from __future__ import annotations

from typing import Any

import orjson

from localgpt.providers.events import (
    Choice,
    Completion,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)


def parse_usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0), cached
    )


def parse_completion(data: dict[str, Any]) -> Completion:
    choices = []
    for i, raw in enumerate(data["choices"]):
        message = raw.get("message") or {}
        calls = [
            ToolCall(
                tc.get("id") or f"call_{i}_{j}",
                tc["function"]["name"],
                _arguments(tc["function"].get("arguments")),
            )
            for j, tc in enumerate(message.get("tool_calls") or [])
        ]
        reason = raw.get("finish_reason") or ("tool_calls" if calls else "stop")
        choices.append(
            Choice(
                content=message.get("content"),
                tool_calls=calls,
                finish_reason=reason,
                logprobs=raw.get("logprobs"),
                index=raw.get("index", i),
            )
        )
    return Completion(choices, parse_usage(data.get("usage")))


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def parse_chunk(chunk: dict[str, Any]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for raw in chunk.get("choices") or ():
        index = raw.get("index", 0)
        delta = raw.get("delta") or {}
        text = delta.get("content")
        if text:
            events.append(TextDelta(text, index, raw.get("logprobs")))
        for tc in delta.get("tool_calls") or ():
            fn = tc.get("function") or {}
            events.append(
                ToolCallDelta(
                    tc.get("index", 0),
                    _arguments(fn.get("arguments")),
                    tc.get("id"),
                    fn.get("name"),
                    index,
                )
            )
        if raw.get("finish_reason"):
            events.append(Finish(raw["finish_reason"], index))
    usage = parse_usage(chunk.get("usage"))
    if usage is not None:
        events.append(usage)
    return events


def parse_text_chunk(chunk: dict[str, Any]) -> list[StreamEvent]:
    """A legacy ``text_completion`` chunk (or whole answer) into events."""
    events: list[StreamEvent] = []
    for raw in chunk.get("choices") or ():
        index = raw.get("index", 0)
        if raw.get("text"):
            events.append(TextDelta(raw["text"], index, raw.get("logprobs")))
        if raw.get("finish_reason"):
            events.append(Finish(raw["finish_reason"], index))
    usage = parse_usage(chunk.get("usage"))
    if usage is not None:
        events.append(usage)
    return events
