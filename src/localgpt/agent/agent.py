"""The assistant layer between the API and the providers.

It adds LocalGPT's identity and safety prompt ahead of the client's messages; in gateway mode
it passes requests through untouched. Memory, tools and workspace context extend it later.
"""

from __future__ import annotations

import re
from typing import Any

from localgpt.agent.prompt import system_prompt
from localgpt.config import Config
from localgpt.providers.base import ChatRequest, Completion, ProviderError, TextRequest
from localgpt.providers.router import EventBatches, Route, Router


class Agent:
    def __init__(self, config: Config, router: Router) -> None:
        self.config = config
        self.router = router
        self.gateway = config.agent.gateway_mode
        self._system = {"role": "system", "content": system_prompt()}

    def prepare(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages a provider sees: ours first, then the client's, system included."""
        if self.gateway:
            return messages
        return [self._system, *messages]

    def _client_view(self, exc: ProviderError) -> ProviderError:
        """Point a ``messages[i]`` parameter at the client's message, not the shifted one."""
        added = 0 if self.gateway else 1
        match = _MESSAGE_PARAM.match(exc.param or "")
        if added and match:
            exc.param = f"messages[{int(match.group(1)) - added}]{match.group(2)}"
        return exc

    async def complete(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> tuple[Route, Completion]:
        request = ChatRequest(model, self.prepare(messages), params)
        try:
            return await self.router.complete(model, request)
        except ProviderError as exc:
            raise self._client_view(exc) from None

    async def open_stream(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> tuple[Route, EventBatches]:
        request = ChatRequest(model, self.prepare(messages), params)
        try:
            return await self.router.open_stream(model, request)
        except ProviderError as exc:
            raise self._client_view(exc) from None

    async def open_text_stream(
        self, model: str, prompt: str | list[Any], params: dict[str, Any]
    ) -> tuple[Route, EventBatches]:
        """A legacy text completion: raw text in, raw text out, no assistant prompt."""
        request = TextRequest(model, prompt, params)
        return await self.router.open_stream(model, request, "stream_text")


_MESSAGE_PARAM = re.compile(r"messages\[(\d+)\](.*)")
