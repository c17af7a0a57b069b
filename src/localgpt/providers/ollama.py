"""Ollama through its native ``POST /api/chat`` (streamed as NDJSON), with tools.

Ollama returns each tool call whole, so a call arrives as one id-and-name delta followed by
one arguments delta; ids are synthesised when Ollama gives none.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import orjson

from localgpt.config import ProviderConfig
from localgpt.providers.base import (
    ChatRequest,
    ModelInfo,
    TextRequest,
    check_params,
    no_text_completions,
)
from localgpt.providers.errors import ProviderError, UnsupportedParameter, stream_cut_error
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
from localgpt.providers.http import HTTPClient, iter_lines, read_body
from localgpt.providers.messages import (
    ChatMessage,
    ContentPart,
    name_in_content,
    parse_arguments,
    text_of,
)

DEFAULT_ENDPOINT = "http://localhost:11434"
SUPPORTED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "response_format",
        "n",
    }
)
OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def _call_id() -> str:
    return "call_" + os.urandom(12).hex()


class OllamaProvider:
    def __init__(self, name: str, config: ProviderConfig, max_tokens: int = 4096) -> None:
        self.name = name
        self.endpoint = (config.endpoint or config.base_url or DEFAULT_ENDPOINT).rstrip("/")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.http = HTTPClient(name, config, headers)
        self.default_model = config.model
        self._extra_models = config.models

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        params = request.params
        check_params(params, SUPPORTED, "Ollama")
        if params.get("n", 1) != 1:
            raise UnsupportedParameter("n", "Ollama returns one choice; n must be 1.")
        body: dict[str, Any] = {
            "model": request.model,
            "messages": convert_messages(request.messages),
            "stream": stream,
        }
        options = {OPTIONS[k]: v for k, v in params.items() if k in OPTIONS}
        limit = params.get("max_completion_tokens") or params.get("max_tokens")
        if limit:
            options["num_predict"] = limit
        stop = params.get("stop")
        if stop:
            options["stop"] = [stop] if isinstance(stop, str) else stop
        if options:
            body["options"] = options
        choice = params.get("tool_choice")
        if params.get("tools") and choice != "none":
            if choice not in (None, "auto"):
                raise UnsupportedParameter(
                    "tool_choice", "Ollama cannot force a tool call; use 'auto' or 'none'."
                )
            body["tools"] = params["tools"]
        fmt = params.get("response_format")
        if fmt and fmt["type"] == "json_object":
            body["format"] = "json"
        elif fmt and fmt["type"] == "json_schema":
            body["format"] = fmt["json_schema"].get("schema") or {"type": "object"}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        url = f"{self.endpoint}/api/chat"
        async with self.http.request("POST", url, self._body(request, False)) as resp:
            raw = await read_body(resp, self.name)
        try:
            data = orjson.loads(raw)
            message = data["message"]
            calls = [
                ToolCall(
                    c.get("id") or _call_id(),
                    c["function"]["name"],
                    orjson.dumps(c["function"].get("arguments") or {}).decode(),
                )
                for c in message.get("tool_calls") or ()
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise self._bad_answer("an answer that is not a chat response") from None
        content = message.get("content") or ""
        return Completion(
            [
                Choice(
                    content=content if content or not calls else None,
                    tool_calls=calls,
                    finish_reason=_reason(data, bool(calls)),
                )
            ],
            _usage(data),
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        url = f"{self.endpoint}/api/chat"
        async with self.http.request("POST", url, self._body(request, True)) as resp:
            calls = 0
            done = False
            async for lines in iter_lines(resp, self.name):
                batch: list[StreamEvent] = []
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        data = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        raise self._bad_answer("a stream line that is not JSON") from None
                    if not isinstance(data, dict):
                        raise self._bad_answer("a stream line that is not a JSON object")
                    if "error" in data:
                        raise ProviderError(
                            f"provider {self.name} failed mid-stream: {data['error']}",
                            status=502,
                            code="upstream_error",
                        )
                    message = data.get("message") or {}
                    if not isinstance(message, dict):
                        raise self._bad_answer("a message that is not a JSON object")
                    if message.get("content"):
                        batch.append(TextDelta(message["content"]))
                    for call in message.get("tool_calls") or ():
                        fn = call.get("function") if isinstance(call, dict) else None
                        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                            raise self._bad_answer("a tool call without a function name")
                        batch.append(
                            ToolCallDelta(calls, "", call.get("id") or _call_id(), fn["name"])
                        )
                        batch.append(
                            ToolCallDelta(calls, orjson.dumps(fn.get("arguments") or {}).decode())
                        )
                        calls += 1
                    if data.get("done"):
                        batch.append(Finish(_reason(data, calls > 0)))
                        usage = _usage(data)
                        if usage is not None:
                            batch.append(usage)
                        done = True
                if batch:
                    yield batch
                if done:
                    return
            raise stream_cut_error(self.name)

    def _bad_answer(self, what: str) -> ProviderError:
        return ProviderError(
            f"provider {self.name} sent {what}",
            status=502,
            code="upstream_bad_response",
            retryable=True,
        )

    async def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        raise no_text_completions(self.name, request.model)
        yield []  # pragma: no cover - makes this an async generator

    async def list_models(self) -> list[ModelInfo]:
        data = await self.http.get_json(f"{self.endpoint}/api/tags", timeout=3.0)
        found = [
            ModelInfo(m["name"], _epoch(m.get("modified_at")))
            for m in data.get("models") or ()
            if isinstance(m, dict) and m.get("name")
        ]
        extra = [self.default_model] if self.default_model else []
        return found + [ModelInfo(m) for m in [*extra, *self._extra_models]]

    async def aclose(self) -> None:
        await self.http.aclose()


def _reason(data: dict[str, Any], has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    return "length" if data.get("done_reason") == "length" else "stop"


def _epoch(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _images(content: list[ContentPart], i: int) -> list[str]:
    images = []
    for j, part in enumerate(content):
        if part["type"] == "image_url":
            url = part["image_url"]["url"]
            header, _, data = url.partition(",")
            if not (header.startswith("data:image/") and header.endswith(";base64")):
                raise UnsupportedParameter(
                    f"messages[{i}].content[{j}].image_url",
                    "Ollama takes images inline: send a base64 data: URL.",
                )
            images.append(data)
        elif part["type"] != "text":
            raise UnsupportedParameter(
                f"messages[{i}].content[{j}]",
                f"Ollama models do not take '{part['type']}' content.",
            )
    return images


def convert_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> tool name, for tool results
    for i, message in enumerate(messages):
        role = message["role"]
        message = name_in_content(message)  # no field for a participant name: in the text
        content = message.get("content")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text_of(content)})
        elif role == "user":
            item: dict[str, Any] = {"role": "user", "content": text_of(content)}
            if isinstance(content, list):
                images = _images(content, i)
                if images:
                    item["images"] = images
            out.append(item)
        elif role == "assistant":
            item = {"role": "assistant", "content": text_of(content)}
            calls = []
            for j, call in enumerate(message.get("tool_calls") or ()):
                fn = call["function"]
                names[call["id"]] = fn["name"]
                arguments = parse_arguments(
                    fn["arguments"] or "", f"messages[{i}].tool_calls[{j}].function.arguments"
                )
                calls.append({"function": {"name": fn["name"], "arguments": arguments}})
            if calls:
                item["tool_calls"] = calls
            out.append(item)
        elif role == "tool":
            item = {"role": "tool", "content": text_of(content)}
            name = names.get(message["tool_call_id"])
            if name:
                item["tool_name"] = name
            out.append(item)
        else:
            raise UnsupportedParameter(
                f"messages[{i}].role",
                "The deprecated 'function' role is not supported; use tool messages.",
            )
    return out


def _usage(data: dict[str, Any]) -> Usage | None:
    """Ollama's counts, when it sent them (it leaves them out now and then, for instance
    when the prompt came from its cache): None lets the router count the tokens itself."""
    if "prompt_eval_count" not in data and "eval_count" not in data:
        return None
    return Usage(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))
