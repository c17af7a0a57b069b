"""The embedded model run by another LocalGPT process on this machine: the model host that
``localgpt serve --workers N`` starts, so the model is loaded once, not once per worker.

The workers reach it over its OpenAI-compatible API on loopback, with a key of its own. What
a worker needs to know of the model without loading it comes from the configuration it
shares with the host: the context window, the parallel sequences, whether its tool calls are
decided under a grammar (the host does the deciding).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

from localgpt.config import ProviderConfig
from localgpt.providers.base import ChatRequest, ModelInfo, TextRequest
from localgpt.providers.events import Completion, StreamEvent
from localgpt.providers.local.models import PACKAGED
from localgpt.providers.openai import OpenAIProvider

PREFIX = "local/"  # the host's ids for its embedded models


class HostedLocalProvider(OpenAIProvider):
    def __init__(self, name: str, config: ProviderConfig, max_tokens: int = 4096) -> None:
        super().__init__(name, config, max_tokens)
        self.local = config

    async def complete(self, request: ChatRequest) -> Completion:
        return await super().complete(replace(request, model=PREFIX + request.model))

    def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        return super().stream(replace(request, model=PREFIX + request.model))

    def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        return super().stream_text(replace(request, model=PREFIX + request.model))

    async def list_models(self) -> list[ModelInfo]:
        return [
            replace(m, id=m.id.removeprefix(PREFIX))
            for m in await super().list_models()
            if m.id.startswith(PREFIX)
        ]

    def decides_tools_by_grammar(self, model: str) -> bool:
        mode = self.local.tool_calls
        if mode != "auto":
            return mode == "grammar"
        return model in PACKAGED or self.local.model_path is None

    def context_window(self, model: str) -> int | None:
        return self.local.context_size

    def capacity(self) -> int:
        return self.local.parallel
