"""Any OpenAI-compatible server: OpenAI, vLLM, llama.cpp, LM Studio, OpenRouter, Ollama's /v1.

The request is already in OpenAI's format, so it is forwarded as it is; the answer is parsed
into provider events so that every provider's stream leaves the API in the same shape.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from localgpt.config import ProviderConfig
from localgpt.providers.base import ChatRequest, ModelInfo, TextRequest
from localgpt.providers.errors import ProviderError, stream_cut_error
from localgpt.providers.events import Completion, StreamEvent
from localgpt.providers.http import HTTPClient, SSEParser, drain, iter_lines, read_body
from localgpt.providers.openai_format import parse_chunk, parse_completion, parse_text_chunk

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    def __init__(self, name: str, config: ProviderConfig, max_tokens: int = 4096) -> None:
        # max_tokens is not imposed here: OpenAI-compatible servers have their own defaults.
        self.name = name
        self.base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        key = config.api_key
        if key is None and self.base_url == DEFAULT_BASE_URL:
            key = os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = HTTPClient(name, config, headers)
        self._chat_url = f"{self.base_url}/chat/completions"
        self._text_url = f"{self.base_url}/completions"
        self._extra_models = config.models
        # OpenAI's own API takes max_completion_tokens; many compatible servers (Ollama's
        # /v1, llama-cpp-python) read only max_tokens and would silently run unbounded.
        mirror = config.send_max_tokens
        self._mirror_max_tokens = is_local_server(self.base_url) if mirror is None else mirror

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = {"model": request.model, "messages": request.messages, **request.params}
        if self._mirror_max_tokens and "max_completion_tokens" in body:
            body["max_tokens"] = body["max_completion_tokens"]
        if stream:
            body["stream"] = True
            # Always ask for usage: it is needed for our own accounting even when the client
            # did not ask for the usage chunk.
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        async with self.http.request("POST", self._chat_url, self._body(request, False)) as resp:
            raw = await read_body(resp, self.name)
        try:
            data = orjson.loads(raw)
            return parse_completion(data)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ProviderError(
                f"provider {self.name} sent an answer that is not a chat completion",
                status=502,
                code="upstream_bad_response",
                retryable=True,
            ) from None

    async def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        async for batch in self._sse(self._chat_url, self._body(request, True), parse_chunk):
            yield batch

    async def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        body = {
            "model": request.model,
            "prompt": request.prompt,
            **request.params,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async for batch in self._sse(self._text_url, body, parse_text_chunk):
            yield batch

    async def _sse(
        self, url: str, body: dict[str, Any], parse: Callable[[dict[str, Any]], list[StreamEvent]]
    ) -> AsyncGenerator[list[StreamEvent], None]:
        async with self.http.request("POST", url, body) as resp:
            parser = SSEParser()
            async for lines in iter_lines(resp, self.name):
                batch: list[StreamEvent] = []
                for payload in parser.feed(lines):
                    batch += self._events(payload, parse)
                if batch:
                    yield batch
                if parser.done:
                    break
            if not parser.done:
                tail = [e for payload in parser.flush() for e in self._events(payload, parse)]
                if tail:
                    yield tail
                if not parser.done:
                    raise stream_cut_error(self.name)
            await drain(resp)

    def _events(
        self, payload: bytes, parse: Callable[[dict[str, Any]], list[StreamEvent]]
    ) -> list[StreamEvent]:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"provider {self.name} sent a stream event that is not JSON",
                status=502,
                code="upstream_bad_response",
            ) from None
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise ProviderError(
                f"provider {self.name} failed mid-stream: {message}",
                status=502,
                code="upstream_error",
            )
        return parse(chunk)

    async def list_models(self) -> list[ModelInfo]:
        data = await self.http.get_json(f"{self.base_url}/models", timeout=3.0)
        found = [
            ModelInfo(m["id"], m.get("created") if isinstance(m.get("created"), int) else None)
            for m in data.get("data", [])
            if isinstance(m, dict) and isinstance(m.get("id"), str)
        ]
        return found + [ModelInfo(m) for m in self._extra_models]

    async def aclose(self) -> None:
        await self.http.aclose()


def is_local_server(url: str) -> bool:
    """A server on this machine or the local network, by its address or name."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a container or LAN name: "ollama", "vllm"
    return address.is_private or address.is_loopback or address.is_link_local
