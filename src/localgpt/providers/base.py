"""The one small protocol every model provider speaks, and what some of them can do besides.

Requests travel in OpenAI's chat format (``providers.messages``): it is the lingua franca of
every client we serve, so the OpenAI-compatible path forwards it almost untouched and the
other providers translate from it. Answers come back as events (``providers.events``).

A provider may also declare, by implementing one of the small protocols below, that it has a
known capacity, a context window, a tokenizer, something to load before its first request,
or tool calls decided under a grammar. The router asks through them; it never looks at a
provider's type.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from localgpt.providers.errors import ProviderError, UnsupportedParameter
from localgpt.providers.events import Completion, Reply, StreamEvent
from localgpt.providers.messages import ChatMessage, ChatParams

if TYPE_CHECKING:
    from typing_extensions import TypeIs

    from localgpt.providers.stops import StopWatch

EventBatches = AsyncGenerator[list[StreamEvent], None]


@dataclass(slots=True)
class ChatRequest:
    """A chat request as a provider sees it: the upstream model name and OpenAI-shaped fields."""

    model: str
    messages: list[ChatMessage]
    # Every other field the client set (temperature, tools, stop, ...), as OpenAI names them.
    params: ChatParams = field(default_factory=lambda: ChatParams())
    # Stop sequences the router matches itself, to know which one ended the reply.
    stops: StopWatch | None = None


@dataclass(slots=True)
class TextRequest:
    """A legacy text completion: a prompt (or several), an optional suffix to fill in before."""

    model: str
    prompt: str | list[Any]
    params: ChatParams = field(default_factory=lambda: ChatParams())


@dataclass(slots=True)
class ModelInfo:
    id: str
    created: int | None = None


class Provider(Protocol):
    """What the router needs of a provider. Implementations import their SDKs lazily."""

    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> EventBatches:
        """Yield events as the model produces them, in batches of what arrived together.

        Raise ``ProviderError`` on failure. Batches let the API turn a burst of tokens into
        one write to the client.
        """
        ...

    def stream_text(self, request: TextRequest) -> EventBatches:
        """A legacy text completion (``/v1/completions``); providers without one raise 404."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def aclose(self) -> None: ...


# --- what some providers can do besides -----------------------------------------------------


@runtime_checkable
class HasCapacity(Protocol):
    """A provider that can run only so many requests at once (the embedded model)."""

    def capacity(self) -> int: ...


@runtime_checkable
class HasContextWindow(Protocol):
    """A provider that knows its models' context length."""

    def context_window(self, model: str) -> int | None: ...


@runtime_checkable
class CountsTokens(Protocol):
    """A provider with its models' own template and tokenizer."""

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int: ...


@runtime_checkable
class WarmsUp(Protocol):
    """A provider with something to load before a model's first request, and a prompt
    cache worth filling (the embedded model)."""

    async def warm_up(self, model: str) -> None: ...


@runtime_checkable
class DecidesToolsByGrammar(Protocol):
    """A provider whose tool calls are decided under a grammar, by a small model that calls
    a tool whenever one is offered (see ``agent.Agent._withheld``)."""

    def decides_tools_by_grammar(self, model: str) -> bool: ...


@runtime_checkable
class ForwardsMessages(Protocol):
    """A provider that speaks Anthropic's Messages API itself: a Messages request for it can
    pass through untouched (cache control, thinking blocks and their signatures, betas)."""

    async def messages(
        self, body: dict[str, Any], headers: dict[str, str], path: str
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` (``/v1/messages`` or its ``/count_tokens``); the JSON."""
        ...

    def messages_stream(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's event stream for ``body``, as bytes; errors before it starts are
        ``ProviderError``s."""
        ...


C = TypeVar("C")
_capable: dict[tuple[type, type], bool] = {}


def capable(provider: object, capability: type[C]) -> TypeIs[C]:
    """``isinstance(provider, capability)``, remembered per class: a runtime protocol check
    walks the protocol's members each time (tens of microseconds, on every request)."""
    key = (type(provider), capability)
    known = _capable.get(key)
    if known is None:
        known = _capable[key] = isinstance(provider, capability)
    return known


# --- what a provider can honour -------------------------------------------------------------

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


def check_params(params: ChatParams, supported: frozenset[str], provider: str) -> None:
    """Refuse, by name, the first field this provider cannot honour."""
    for key, value in params.items():
        if key in supported or key in IGNORABLE_PARAMS:
            continue
        if key in NEUTRAL_VALUES and value == NEUTRAL_VALUES[key]:
            continue
        raise UnsupportedParameter(
            key, f"The '{key}' parameter is not supported by {provider} models."
        )


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


async def collect(batches: EventBatches) -> Completion:
    """A whole completion, gathered from a stream of event batches."""
    reply = Reply()
    try:
        async for batch in batches:
            for event in batch:
                reply.feed(event)
    finally:
        await batches.aclose()
    return reply.completion()
