"""A provider that answers from a script, in-process: the test seam below HTTP.

Like llm's ``MockModel``: each call takes the next reply of the script (the last one
repeats) and records the request, so a test can drive the agent, the tool loop or a renderer
without a server, a socket or a model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from localgpt.config import Config, parse_config
from localgpt.providers.base import ChatRequest, ModelInfo, TextRequest, collect
from localgpt.providers.events import (
    Completion,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from localgpt.providers.router import Router

Reply = list[list[StreamEvent]]  # batches of events


def text(*pieces: str, usage: tuple[int, int] = (10, 5)) -> Reply:
    """A reply of text pieces, one batch each, then finish and usage."""
    return [[TextDelta(p)] for p in pieces] + [[Finish("stop"), Usage(*usage)]]


def calls(*called: tuple[str, dict[str, Any]], ids: list[str] | None = None) -> Reply:
    """A reply that calls tools: each call introduced, then its arguments in two pieces."""
    batches: Reply = []
    for i, (name, args) in enumerate(called):
        data = json.dumps(args)
        cid = ids[i] if ids else f"call_{i}"
        batches.append([ToolCallDelta(i, "", cid, name)])
        batches.append(
            [ToolCallDelta(i, data[: len(data) // 2]), ToolCallDelta(i, data[len(data) // 2 :])]
        )
    batches.append([Finish("tool_calls"), Usage(10, 5)])
    return batches


class ScriptedProvider:
    name = "scripted"

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [text("ok")]
        self.requests: list[ChatRequest] = []

    def _next(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    async def complete(self, request: ChatRequest) -> Completion:
        return await collect(self.stream(request))

    async def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        self.requests.append(request)
        for batch in self._next():
            yield list(batch)

    async def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        for batch in self._next():
            yield list(batch)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("model")]

    async def aclose(self) -> None:
        pass


def scripted_config(extra: dict[str, Any] | None = None) -> Config:
    """A configuration whose default model is ``scripted/model``."""
    data: dict[str, Any] = {
        "agent": {"default_model": "scripted/model"},
        "providers": {"scripted": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
    }
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    return parse_config(data)


def scripted_router(config: Config, provider: ScriptedProvider) -> Router:
    return Router(config, providers={"scripted": provider})
