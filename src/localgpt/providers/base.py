"""The one small protocol every model provider speaks, and the events it streams.

Requests and messages travel in OpenAI's chat format (plain dicts, already validated by the
API layer): it is the lingua franca of every client we serve, so the OpenAI-compatible path
forwards it almost untouched and the other providers translate from it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson


@dataclass(slots=True)
class ChatRequest:
    """A chat request as a provider sees it: the upstream model name and OpenAI-shaped fields."""

    model: str
    messages: list[dict[str, Any]]
    # Every other field the client set (temperature, tools, stop, ...), as OpenAI names them.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TextRequest:
    """A legacy text completion: a prompt (or several), an optional suffix to fill in before."""

    model: str
    prompt: str | list[Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0
    logprobs: Any = None


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a tool call. The first piece of each call carries ``id`` and ``name``."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    choice: int = 0


@dataclass(slots=True)
class Finish:
    reason: str
    choice: int = 0


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        cached = None
        if self.cached_tokens is not None or other.cached_tokens is not None:
            cached = (self.cached_tokens or 0) + (other.cached_tokens or 0)
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cached,
        )


StreamEvent = TextDelta | ToolCallDelta | Finish | Usage


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Choice:
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    logprobs: Any = None
    index: int = 0


@dataclass(slots=True)
class Completion:
    choices: list[Choice]
    usage: Usage | None = None


class Provider(Protocol):
    """What the router needs of a provider. Implementations import their SDKs lazily."""

    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        """Yield events as the model produces them, in batches of what arrived together.

        Raise ``ProviderError`` on failure. Batches let the API turn a burst of tokens into
        one write to the client.
        """
        ...

    def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        """A legacy text completion (``/v1/completions``); providers without one raise 404."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class ModelInfo:
    id: str
    created: int | None = None


# --- Errors ---------------------------------------------------------------------------------


class ProviderError(Exception):
    """A failed provider call, carrying what the client should see and whether to fail over.

    ``status`` is what the API answers once failover is exhausted: an upstream 4xx keeps its
    status, an unreachable or 5xx upstream is 502, a timeout 504.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str = "upstream_error",
        code: str | None = None,
        param: str | None = None,
        retryable: bool = False,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.retryable = retryable
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class UnsupportedParameter(ProviderError):
    """The routed model cannot honour a request field: a 400 that names it, never a silent drop."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(
            message,
            status=400,
            type="invalid_request_error",
            code="unsupported_parameter",
            param=param,
        )


def upstream_status_error(
    provider: str,
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    retry_after: str | None = None,
) -> ProviderError:
    """Classify an upstream HTTP error: 429 and 5xx fail over, other 4xx keep their status."""
    if status == 429:
        return ProviderError(
            message,
            status=429,
            type=type or "rate_limit_error",
            code=code or "rate_limit_exceeded",
            param=param,
            retryable=True,
            retry_after=retry_after,
        )
    if status >= 500:
        return ProviderError(
            f"provider {provider} failed with HTTP {status}: {message}",
            status=502,
            type="upstream_error",
            code=code or "upstream_error",
            retryable=True,
        )
    if status == 404:
        return ProviderError(
            message,
            status=404,
            type=type or "invalid_request_error",
            code=code or "model_not_found",
            param=param,
        )
    return ProviderError(
        message, status=status, type=type or "invalid_request_error", code=code, param=param
    )


def unreachable_error(provider: str, detail: str) -> ProviderError:
    return ProviderError(
        f"provider {provider} is unreachable: {detail}",
        status=502,
        type="upstream_error",
        code="upstream_unreachable",
        retryable=True,
    )


def timeout_error(provider: str, what: str) -> ProviderError:
    return ProviderError(
        f"provider {provider} timed out ({what})",
        status=504,
        type="upstream_error",
        code="upstream_timeout",
        retryable=True,
    )


def stream_cut_error(provider: str) -> ProviderError:
    return ProviderError(
        f"provider {provider} ended the stream before it was complete",
        status=502,
        type="upstream_error",
        code="upstream_stream_cut",
        retryable=True,
    )


# --- What a provider can honour ---------------------------------------------------------------

# Fields that never change an answer: every provider may ignore them.
IGNORABLE_PARAMS = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
# A value that asks for nothing beyond the default is honoured by doing nothing.
NEUTRAL_VALUES: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "parallel_tool_calls": True,
}


def check_params(params: dict[str, Any], supported: frozenset[str], provider: str) -> None:
    """Refuse, by name, the first field this provider cannot honour."""
    for key, value in params.items():
        if key in supported or key in IGNORABLE_PARAMS:
            continue
        if key in NEUTRAL_VALUES and value == NEUTRAL_VALUES[key]:
            continue
        raise UnsupportedParameter(
            key, f"The '{key}' parameter is not supported by {provider} models."
        )


def parse_arguments(arguments: str, where: str) -> dict[str, Any]:
    """Decode a client-sent tool call's arguments for providers that take an object."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise UnsupportedParameter(where, "Tool call arguments must be a JSON object.") from None
    if not isinstance(value, dict):
        raise UnsupportedParameter(where, "Tool call arguments must be a JSON object.")
    return value


def text_of(content: Any) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text") or part.get("refusal") or ""
        for part in content
        if part.get("type") in ("text", "refusal")
    )


def name_in_content(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with its participant ``name`` written into its text, for the providers
    whose messages have no field for one (Anthropic, Ollama, the embedded model's chat
    template): the text starts ``"{name}: "``, the form of a chat transcript, so the model
    still sees who spoke. In a list of parts, the first text part gets the prefix, or a text
    part holding it goes first. A message without text to label (an assistant turn of tool
    calls only) just loses the key; a tool message's name (its tool's) stays as it is."""
    name = message.get("name")
    if not name or message.get("role") in ("tool", "function"):
        return message
    out = {k: v for k, v in message.items() if k != "name"}
    content = message.get("content")
    label = f"{name}: "
    if isinstance(content, str):
        out["content"] = label + content
    elif isinstance(content, list):
        parts = list(content)
        if parts and parts[0].get("type") == "text":
            parts[0] = {**parts[0], "text": label + parts[0].get("text", "")}
        else:
            parts.insert(0, {"type": "text", "text": label})
        out["content"] = parts
    return out


def no_text_completions(provider: str, model: str) -> ProviderError:
    """What OpenAI answers when a chat-only model is asked for a legacy completion."""
    return ProviderError(
        f"The model '{model}' ({provider}) is a chat model and not supported in the "
        "v1/completions endpoint. Did you mean to use v1/chat/completions?",
        status=404,
        type="invalid_request_error",
        code="model_not_supported",
        param="model",
    )


async def collect(batches: AsyncGenerator[Sequence[Any], None]) -> Completion:
    """A whole completion, gathered from a stream of event batches (one choice)."""
    text: list[str] = []
    calls: dict[int, ToolCall] = {}
    reason = "stop"
    usage: Usage | None = None
    logprobs: list[Any] = []
    try:
        async for batch in batches:
            for event in batch:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                    if isinstance(event.logprobs, dict):
                        logprobs += event.logprobs.get("content") or []
                elif isinstance(event, ToolCallDelta):
                    call = calls.setdefault(event.index, ToolCall(event.id or "", "", ""))
                    call.id = call.id or event.id or ""
                    call.name = event.name or call.name
                    call.arguments += event.arguments
                elif isinstance(event, Finish):
                    reason = event.reason
                elif isinstance(event, Usage):
                    usage = event if usage is None else usage + event
    finally:
        await batches.aclose()
    content = "".join(text)
    return Completion(
        [
            Choice(
                content=content if content or not calls else None,
                tool_calls=[calls[i] for i in sorted(calls)],
                finish_reason=reason,
                logprobs={"content": logprobs} if logprobs else None,
            )
        ],
        usage,
    )
