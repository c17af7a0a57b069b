"""Anthropic's Messages API through the official ``anthropic`` SDK.

Translates OpenAI-shaped requests: system and developer messages into ``system``, tool calls
and results into ``tool_use`` and ``tool_result`` blocks, ``tool_choice``, images, stop
sequences, JSON output into ``output_config``; and back: stop reasons, usage, and a stream
whose ``input_json_delta`` pieces become tool-call argument deltas.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from localgpt.config import ProviderConfig
from localgpt.providers.base import (
    ChatRequest,
    ModelInfo,
    TextRequest,
    check_params,
    no_text_completions,
)
from localgpt.providers.errors import (
    ProviderError,
    UnsupportedParameter,
    stream_cut_error,
    timeout_error,
    unreachable_error,
    upstream_status_error,
)
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
from localgpt.providers.messages import ChatMessage, name_in_content, parse_arguments, text_of

if TYPE_CHECKING:
    import anthropic

SUPPORTED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "n",
    }
)
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider:
    def __init__(self, name: str, config: ProviderConfig, max_tokens: int = 4096) -> None:
        import anthropic

        self.name = name
        self.max_tokens = max_tokens
        self._sdk = anthropic
        # API version 2026-10-21 (the SDK's default) has no sampling parameters; an older
        # version configured by the user brings them back, sent as extra body fields.
        self._sampling = config.api_version is not None and config.api_version < "2026-10-21"
        headers: dict[str, Any] = dict(config.headers)
        key = config.api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            # A local Anthropic-compatible server may need no key; the real one answers 401.
            headers["Authorization"] = anthropic.omit
        if config.api_version:
            headers["anthropic-version"] = config.api_version
        self._client = anthropic.AsyncAnthropic(
            api_key=config.api_key,
            base_url=config.base_url,
            max_retries=0,
            timeout=anthropic.Timeout(
                config.timeout, connect=config.connect_timeout, read=config.read_timeout
            ),
            default_headers=headers or None,
        )
        self._extra_models = config.models

    # --- requests -------------------------------------------------------------------

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        params = request.params
        check_params(params, SUPPORTED, "Anthropic")
        if params.get("n", 1) != 1:
            raise UnsupportedParameter("n", "Anthropic models return one choice; n must be 1.")
        system, messages = convert_messages(request.messages)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": params.get("max_completion_tokens")
            or params.get("max_tokens")
            or self.max_tokens,
        }
        if system:
            kwargs["system"] = system
        sampling = {k: params[k] for k in ("temperature", "top_p", "top_k") if k in params}
        if sampling.get("temperature") == 1 and not self._sampling:
            del sampling["temperature"]  # Anthropic's own default: honoured by sending nothing
        if sampling:
            key = next(iter(sampling))
            if not self._sampling:
                raise UnsupportedParameter(
                    key,
                    (
                        f"Anthropic's API (version 2026-10-21) does not accept '{key}'. Leave it "
                        'out, or set api_version = "2023-06-01" in [providers.'
                        f"{self.name}] for models that still support sampling parameters."
                    ),
                )
            if sampling.get("temperature", 0) > 1:
                raise UnsupportedParameter(
                    "temperature", "Anthropic models take a temperature from 0 to 1."
                )
            kwargs["extra_body"] = sampling
        stop = params.get("stop")
        if stop:
            kwargs["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        tools = params.get("tools")
        choice = params.get("tool_choice")
        if tools:
            kwargs["tools"] = [convert_tool(t["function"]) for t in tools]
            tool_choice = convert_tool_choice(choice, params.get("parallel_tool_calls"))
            if tool_choice:
                kwargs["tool_choice"] = tool_choice
        elif choice not in (None, "none", "auto"):
            raise UnsupportedParameter("tool_choice", "tool_choice needs tools.")
        fmt = params.get("response_format")
        if fmt and fmt["type"] != "text":
            schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return kwargs

    def _error(self, exc: Exception) -> ProviderError:
        sdk = self._sdk
        if isinstance(exc, sdk.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error", body) if isinstance(body, dict) else {}
            message = err.get("message") if isinstance(err, dict) else None
            etype = err.get("type") if isinstance(err, dict) else None
            code = None
            if etype == "not_found_error":
                etype, code = "invalid_request_error", "model_not_found"
            return upstream_status_error(
                self.name,
                exc.status_code,
                message or str(exc),
                type=etype,
                code=code,
                retry_after=exc.response.headers.get("retry-after"),
            )
        if isinstance(exc, sdk.APITimeoutError):
            return timeout_error(self.name, "no answer in time")
        if isinstance(exc, sdk.APIConnectionError):
            return unreachable_error(self.name, str(exc.__cause__ or exc))
        if isinstance(exc, sdk.APIError):
            return ProviderError(
                f"provider {self.name} failed: {exc}", status=502, code="upstream_error"
            )
        return stream_cut_error(self.name)

    async def complete(self, request: ChatRequest) -> Completion:
        kwargs = self._kwargs(request)
        try:
            message = await self._client.messages.create(**kwargs)
        except Exception as exc:
            if isinstance(exc, self._sdk.AnthropicError):
                raise self._error(exc) from None
            raise
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [
            ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False))
            for b in message.content
            if b.type == "tool_use"
        ]
        reason = STOP_REASONS.get(message.stop_reason or "end_turn", "stop")
        return Completion(
            [
                Choice(
                    content=text if text or not calls else None,
                    tool_calls=calls,
                    finish_reason=reason,
                )
            ],
            usage_of(message.usage),
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        kwargs = self._kwargs(request)
        transport_errors = _transport_errors()
        try:
            stream = await self._client.messages.create(**kwargs, stream=True)
        except self._sdk.AnthropicError as exc:
            raise self._error(exc) from None
        try:
            usage = Usage(0, 0)
            tool_index: dict[int, int] = {}
            finished = False
            async for event in stream:
                batch = self._events(event, tool_index)
                if event.type == "message_start":
                    usage = usage_of(event.message.usage)
                elif event.type == "message_delta":
                    usage.completion_tokens = event.usage.output_tokens
                    if event.usage.input_tokens:
                        usage.prompt_tokens = event.usage.input_tokens
                elif event.type == "message_stop":
                    batch.append(usage)
                    finished = True
                if batch:
                    yield batch
            if not finished:
                raise stream_cut_error(self.name)
        except self._sdk.AnthropicError as exc:
            raise self._error(exc) from None
        except transport_errors as exc:
            if "Timeout" in type(exc).__name__:
                raise timeout_error(self.name, "stream stalled") from None
            raise stream_cut_error(self.name) from None
        finally:
            await stream.close()

    @staticmethod
    def _events(event: Any, tool_index: dict[int, int]) -> list[StreamEvent]:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return [TextDelta(delta.text)] if delta.text else []
            if delta.type == "input_json_delta" and event.index in tool_index:
                piece = delta.partial_json
                return [ToolCallDelta(tool_index[event.index], piece)] if piece else []
            return []
        if kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                index = tool_index[event.index] = len(tool_index)
                return [ToolCallDelta(index, "", block.id, block.name)]
            if block.type == "text" and block.text:
                return [TextDelta(block.text)]
            return []
        if kind == "message_delta" and event.delta.stop_reason:
            return [Finish(STOP_REASONS.get(event.delta.stop_reason, "stop"))]
        return []

    # --- Anthropic's wire format, passed through (see base.ForwardsMessages) ----------

    async def messages(
        self, body: dict[str, Any], headers: dict[str, str], path: str
    ) -> dict[str, Any]:
        try:
            found = await self._client.post(
                path, body=body, cast_to=object, options={"headers": headers}
            )
        except self._sdk.AnthropicError as exc:
            raise self._error(exc) from None
        if not isinstance(found, dict):
            raise ProviderError(
                f"provider {self.name} answered with something other than a JSON object",
                status=502,
                code="upstream_bad_response",
                retryable=True,
            )
        return found

    async def messages_stream(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncGenerator[bytes, None]:
        import httpx2

        try:
            response = await self._client.post(
                "/v1/messages",
                body=body,
                cast_to=httpx2.Response,
                # The SDK hands back the response unread: its bytes are passed on as they come.
                options={"headers": {**headers, "X-Stainless-Raw-Response": "stream"}},
            )
        except self._sdk.AnthropicError as exc:
            raise self._error(exc) from None
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except _transport_errors() as exc:
            if "Timeout" in type(exc).__name__:
                raise timeout_error(self.name, "stream stalled") from None
            raise stream_cut_error(self.name) from None
        finally:
            await response.aclose()

    async def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        raise no_text_completions(self.name, request.model)
        yield []  # pragma: no cover - makes this an async generator

    async def list_models(self) -> list[ModelInfo]:
        try:
            page = await self._client.models.list(limit=100)
        except self._sdk.AnthropicError as exc:
            raise self._error(exc) from None
        found = [ModelInfo(m.id, _epoch(m.created_at)) for m in page.data]
        return found + [ModelInfo(m) for m in self._extra_models]

    async def aclose(self) -> None:
        await self._client.close()


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx2

    return (httpx2.TransportError,)


def _epoch(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def usage_of(usage: anthropic.types.Usage | Any) -> Usage:
    cached = getattr(usage, "cache_read_input_tokens", None) or 0
    created = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(
        (usage.input_tokens or 0) + cached + created,
        usage.output_tokens or 0,
        cached if cached else None,
    )


# --- translation, OpenAI -> Anthropic -------------------------------------------------------


def convert_tool(fn: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        tool["description"] = fn["description"]
    if fn.get("strict"):
        tool["strict"] = True
    return tool


def convert_tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    else:
        out = {"type": "tool", "name": choice["function"]["name"]}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None
    return out


def _image(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0]
        if ";base64" not in header or not media_type.startswith("image/"):
            raise UnsupportedParameter(where, "Image data URLs must be base64-encoded images.")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _document(file: dict[str, Any], where: str) -> dict[str, Any]:
    data = file.get("file_data") or ""
    header, _, payload = data.partition(",")
    if not header.startswith("data:application/pdf;base64"):
        raise UnsupportedParameter(
            where, "Anthropic models take files as base64 PDF data URLs in 'file_data'."
        )
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": payload},
    }


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        kind = part["type"]
        if kind == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part["image_url"]["url"], where))
        elif kind == "file":
            blocks.append(_document(part["file"], where))
        else:
            raise UnsupportedParameter(where, f"Anthropic models do not take '{kind}' content.")
    return blocks


def convert_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI messages -> (system text, Anthropic messages), merging same-role neighbours."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        role = message["role"]
        message = name_in_content(message)  # no field for a participant name: in the text
        if role in ("system", "developer"):
            text = text_of(message["content"])
            if text:
                system.append(text)
        elif role == "user":
            add("user", _user_blocks(message["content"], i))
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = text_of(message.get("content"))
            if text:
                blocks.append({"type": "text", "text": text})
            for j, call in enumerate(message.get("tool_calls") or ()):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": call["function"]["name"],
                        "input": parse_arguments(
                            call["function"]["arguments"],
                            f"messages[{i}].tool_calls[{j}].function.arguments",
                        ),
                    }
                )
            add("assistant", blocks)
        elif role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message["tool_call_id"],
                        "content": text_of(message["content"]),
                    }
                ],
            )
        else:
            raise UnsupportedParameter(
                f"messages[{i}].role",
                "The deprecated 'function' role is not supported; use tool messages.",
            )
    return "\n\n".join(system), out
