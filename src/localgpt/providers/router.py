"""Model routing and failover: which provider serves a model id, and what to try next.

Routing follows upstream LocalGPT: aliases, ``provider/model`` split at the first ``/``, and
rules for bare names. Failover walks ``fallback_models`` on retryable failures (429, 5xx,
timeouts, refused or reset connections); a model that failed that way cools down for 60 s.
On a stream, failover is only possible until the first event, which the router waits for.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from localgpt.config import DEFAULT_LOCAL_MODEL, EMBEDDING_MODEL, Config, ProviderConfig
from localgpt.providers.base import (
    ChatRequest,
    CountsTokens,
    DecidesToolsByGrammar,
    EventBatches,
    HasCapacity,
    HasContextWindow,
    ModelInfo,
    Provider,
    TextRequest,
    WarmsUp,
    capable,
    collect,
)
from localgpt.providers.capacity import Slots
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Completion, TextDelta, ToolCallDelta, Usage
from localgpt.providers.messages import ChatMessage, text_of

log = logging.getLogger("localgpt.providers")

BUILTIN_ALIASES = {
    "opus": "anthropic/claude-opus-4-6",
    "sonnet": "anthropic/claude-sonnet-4-6",
    "gpt": "openai/gpt-4o",
    "gpt-mini": "openai/gpt-4o-mini",
}
COOLDOWN_SECONDS = 60.0
EMBEDDING_IDS = frozenset({EMBEDDING_MODEL, EMBEDDING_MODEL.removeprefix("local/")})
LOCAL_MODELS = (DEFAULT_LOCAL_MODEL, "qwen2.5-coder-0.5b-instruct")

_MODULES = {
    "openai": ("localgpt.providers.openai", "OpenAIProvider"),
    "anthropic": ("localgpt.providers.anthropic", "AnthropicProvider"),
    "ollama": ("localgpt.providers.ollama", "OllamaProvider"),
    "local": ("localgpt.providers.local", "LocalProvider"),
}

T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R", ChatRequest, TextRequest)


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.model}"


def model_not_found(model: str, why: str) -> ProviderError:
    return ProviderError(
        f"The model '{model}' does not exist or you do not have access to it ({why}).",
        status=404,
        type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


class SharedCooldowns(Protocol):
    async def cool(self, route: str, seconds: float) -> None: ...

    async def cooling(self, routes: list[str]) -> set[str]: ...


def _quiet(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not share a cooldown: %s", task.exception())


class Router:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        providers: dict[str, Provider] | None = None,
    ) -> None:
        """``providers``: instances to use for some configured provider names (a test's
        scripted provider) instead of building them from their type."""
        self.config = config
        self.aliases = {**BUILTIN_ALIASES, **config.agent.aliases}
        self._providers: dict[str, Provider] = dict(providers or {})
        self._slots: dict[str, Slots] = {}
        self._cooldown: dict[str, float] = {}
        self.shared: SharedCooldowns | None = None  # [state] url: cooldowns seen by all
        # Observers for metrics: a failed call, and a wait for a provider slot.
        self.on_error: Callable[[Route, ProviderError, bool], None] | None = None
        self.on_wait: Callable[[str, float], None] | None = None
        self._clock = clock
        self._routes: dict[str, Route] = {}

    # --- resolution ---------------------------------------------------------------------

    def configured(self, name: str) -> ProviderConfig | None:
        return self.config.provider(name)

    def resolve(self, model: str) -> Route:
        """Map a client's model id to a provider and the provider's own model name."""
        route = self._routes.get(model)
        if route is None:
            route = self._resolve(model)
            if len(self._routes) < 4096:
                self._routes[model] = route
        return route

    def _resolve(self, model: str) -> Route:
        target = self.aliases.get(model, model)
        if target.lower() in EMBEDDING_IDS:
            raise ProviderError(
                f"The model '{model}' is an embedding model: use it with /v1/embeddings, not "
                "for chat or text completions.",
                status=400,
                type="invalid_request_error",
                code="model_not_supported",
                param="model",
            )
        name, sep, rest = target.partition("/")
        if sep and rest and (name in self.config.providers or name == "local"):
            return Route(name, rest)
        if sep and name in BUILTIN_ALIAS_PROVIDERS:
            raise model_not_found(
                model, f"provider '{name}' is not configured: add [providers.{name}] to config.toml"
            )
        bare = target
        if bare.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-")):
            return self._builtin("openai", bare, model)
        if bare.startswith("claude-"):
            return self._builtin("anthropic", bare, model)
        if bare in LOCAL_MODELS:
            return Route("local", bare)
        if "ollama" in self.config.providers:
            return Route("ollama", bare)
        raise model_not_found(
            model,
            "no configured provider serves it; use provider/model, "
            "e.g. openai/gpt-4o, or configure [providers.ollama] for bare names",
        )

    def _builtin(self, provider: str, bare: str, asked: str) -> Route:
        if provider not in self.config.providers:
            raise model_not_found(
                asked,
                f"provider '{provider}' is not configured: add [providers.{provider}] "
                "to config.toml",
            )
        return Route(provider, bare)

    def provider(self, name: str) -> Provider:
        found = self._providers.get(name)
        if found is None:
            config = self.configured(name)
            if config is None:
                raise model_not_found(name, f"provider '{name}' is not configured")
            module, cls = _MODULES[config.type]
            if config.type == "local" and config.base_url is not None:
                # The embedded model, loaded once by another process (serve --workers N).
                module, cls = "localgpt.providers.local.hosted", "HostedLocalProvider"
            factory = getattr(importlib.import_module(module), cls)
            found = self._providers[name] = factory(
                name, config, max_tokens=self.config.agent.max_tokens
            )
        return found

    def candidates(self, model: str) -> list[Route]:
        """The requested model, then the fallbacks; cooling models go last, not away."""
        first = self.resolve(model)
        fallbacks = self.config.agent.fallback_models
        if not fallbacks:
            return [first]
        routes = [first]
        for fb in fallbacks:
            try:
                route = self.resolve(fb)
            except ProviderError:
                continue
            if route not in routes:
                routes.append(route)
        now = self._clock()
        ready = [r for r in routes if self._cooldown.get(r.id, 0.0) <= now]
        return ready + [r for r in routes if r not in ready]

    async def _shared_order(self, routes: list[Route]) -> list[Route]:
        """The cooldowns every process has seen (Redis), cooling models last; with Redis
        down, this process's own."""
        try:
            cooling = await self.shared.cooling([r.id for r in routes])  # type: ignore[union-attr]
        except Exception as exc:
            log.warning("shared cooldowns unavailable: %s", exc)
            return routes
        ready = [r for r in routes if r.id not in cooling]
        return ready + [r for r in routes if r not in ready]

    def _failed(self, route: Route, exc: ProviderError, failover: bool) -> None:
        if failover and exc.retryable:
            self._cooldown[route.id] = self._clock() + COOLDOWN_SECONDS
            if self.shared is not None:
                task = asyncio.ensure_future(self.shared.cool(route.id, COOLDOWN_SECONDS))
                task.add_done_callback(_quiet)
        if self.on_error is not None:
            self.on_error(route, exc, failover and exc.retryable)

    def slots(self, name: str) -> Slots:
        found = self._slots.get(name)
        if found is None:
            config = self.configured(name)
            if config is None:
                limit, queue = 64, 256
            else:
                provider = self.provider(name)
                own = provider.capacity() if capable(provider, HasCapacity) else None
                limit, queue = own or config.max_concurrency, config.max_queue
            found = self._slots[name] = Slots(name, limit, queue)
        return found

    async def wait_free(self, model: str) -> None:
        """Wait until the provider serving ``model`` has a free slot and no queue."""
        try:
            name = self.resolve(model).provider
        except ProviderError:
            return  # the call itself will say what is wrong
        await self.slots(name).free()

    def queues(self) -> dict[str, tuple[int, int]]:
        """Waiting and running requests per provider, for metrics."""
        return {name: (s.waiting, s.active) for name, s in self._slots.items()}

    async def _slot(self, name: str) -> Slots:
        slots = self.slots(name)
        waited = await slots.acquire()
        if self.on_wait is not None:
            self.on_wait(name, waited)
        return slots

    # --- calls --------------------------------------------------------------------------

    async def _failover(
        self, model: str, attempt: Callable[[Provider, Route], Awaitable[T]]
    ) -> tuple[Route, T]:
        """The one failover loop: ``attempt`` on the requested model, then on each fallback
        while the failure is one another model may not share (429, 5xx, timeouts, refused
        connections); a model that failed that way cools down."""
        routes = self.candidates(model)
        if self.shared is not None and len(routes) > 1:
            routes = await self._shared_order(routes)
        errors: list[tuple[Route, ProviderError]] = []
        for route in routes:
            try:
                return route, await attempt(self.provider(route.provider), route)
            except ProviderError as exc:
                self._failed(route, exc, len(routes) > 1)
                errors.append((route, exc))
                if not exc.retryable:
                    break
        raise _exhausted(errors)

    async def complete(self, model: str, request: ChatRequest) -> tuple[Route, Completion]:
        if request.stops is not None:  # matched on the stream, which can be cut short
            route, stream = await self.open_stream(model, request)
            return route, await collect(stream)

        async def attempt(provider: Provider, route: Route) -> Completion:
            slots = await self._slot(route.provider)
            try:
                result = await provider.complete(replace(request, model=route.model))
            finally:
                slots.release()
            if result.usage is None:
                texts = [c.content or "" for c in result.choices]
                texts += [t.name + t.arguments for c in result.choices for t in c.tool_calls]
                result.usage = Usage(
                    await self._prompt_tokens(route, request), _estimate("".join(texts))
                )
            return result

        return await self._failover(model, attempt)

    async def open_stream(self, model: str, request: ChatRequest) -> tuple[Route, EventBatches]:
        """Start a chat stream and wait for its first events, failing over until then."""
        return await self._open(model, request, lambda provider: provider.stream)

    async def open_text_stream(
        self, model: str, request: TextRequest
    ) -> tuple[Route, EventBatches]:
        """The same for a legacy text completion."""
        return await self._open(model, request, lambda provider: provider.stream_text)

    async def _open(
        self,
        model: str,
        request: R,
        method: Callable[[Provider], Callable[[R], EventBatches]],
    ) -> tuple[Route, EventBatches]:
        def make(provider: Provider, route: Route) -> EventBatches:
            stream = method(provider)(replace(request, model=route.model))
            if isinstance(request, ChatRequest) and request.stops is not None:
                stream = request.stops.watch(stream)
            return stream

        route, stream = await self.open_native(model, make)
        return route, self._counted(route, request, stream)

    async def open_native(
        self, model: str, make: Callable[[Provider, Route], AsyncGenerator[X, None]]
    ) -> tuple[Route, AsyncGenerator[X, None]]:
        """Start a stream (``make`` on each candidate's provider) and wait for its first
        item, failing over until then; the stream holds a provider slot until it ends. For
        events, and for a provider's own wire format passed through (``forward``)."""

        async def attempt(provider: Provider, route: Route) -> AsyncGenerator[X, None]:
            slots = await self._slot(route.provider)
            stream: AsyncGenerator[X, None] | None = None
            handed_over = False
            try:
                stream = make(provider, route)
                first = await anext(stream)
                handed_over = True  # from here the stream holds the slot until it ends
                return _prepend(first, stream, slots)
            except StopAsyncIteration:
                raise ProviderError(
                    f"provider {route.provider} sent an empty stream",
                    status=502,
                    code="upstream_bad_response",
                    retryable=True,
                ) from None
            except ProviderError:
                if stream is not None:
                    await stream.aclose()
                raise
            except BaseException:
                if stream is not None:
                    await asyncio.shield(stream.aclose())
                raise
            finally:
                if not handed_over:
                    slots.release()

        return await self._failover(model, attempt)

    async def forward(
        self, model: str, call: Callable[[Provider, Route], Awaitable[T]]
    ) -> tuple[Route, T]:
        """One call in a provider's own wire format (Anthropic's Messages passed through),
        with the failover and capacity limits of any other."""

        async def attempt(provider: Provider, route: Route) -> T:
            slots = await self._slot(route.provider)
            try:
                return await call(provider, route)
            finally:
                slots.release()

        return await self._failover(model, attempt)

    def all_can(self, model: str, capability: type[Any]) -> bool:
        """Whether the provider of ``model`` and of each fallback has ``capability``."""
        try:
            routes = self.candidates(model)
        except ProviderError:
            return False
        return all(capable(self.provider(r.provider), capability) for r in routes)

    async def stream_on(self, route: Route, request: ChatRequest) -> EventBatches:
        """A follow-up call in a turn already routed (the tool loop): the same provider and
        model, under the same capacity limit, counted in the same metrics; no failover, as
        the transcript now holds this model's tool calls."""
        return self._counted(
            route, request, self._holding(route, replace(request, model=route.model))
        )

    async def _holding(self, route: Route, request: ChatRequest) -> EventBatches:
        # The slot is taken on the first iteration, inside the try that gives it back: a
        # stream that is never iterated holds nothing.
        slots = await self._slot(route.provider)
        stream = self.provider(route.provider).stream(request)
        if request.stops is not None:
            stream = request.stops.watch(stream)
        try:
            async for batch in stream:
                yield batch
        except ProviderError as exc:
            self._failed(route, exc, False)
            raise
        finally:
            try:
                await stream.aclose()
            finally:
                slots.release()

    async def _counted(
        self, route: Route, request: ChatRequest | TextRequest, batches: EventBatches
    ) -> EventBatches:
        """The stream, ending with a usage of its own when the upstream sent none: counted
        with the model's tokenizer where the provider has one, else about four characters a
        token. A real answer never reports zero tokens."""
        seen = False
        answer: list[str] = []
        try:
            async for batch in batches:
                for event in batch:
                    if isinstance(event, Usage):
                        seen = True
                    elif isinstance(event, TextDelta):
                        answer.append(event.text)
                    elif isinstance(event, ToolCallDelta):
                        answer.append((event.name or "") + event.arguments)
                yield batch
        finally:
            await batches.aclose()
        if not seen:
            yield [Usage(await self._prompt_tokens(route, request), _estimate("".join(answer)))]

    async def _prompt_tokens(self, route: Route, request: ChatRequest | TextRequest) -> int:
        if isinstance(request, ChatRequest):
            counted = await self.count_tokens(route.id, request.messages)
            if counted is not None:
                return counted
            text = "".join(
                text_of(m.get("content")) + str(m.get("tool_calls") or "") for m in request.messages
            )
            return _estimate(text) + 4 * len(request.messages)
        prompt = request.prompt
        return _estimate(prompt if isinstance(prompt, str) else str(prompt))

    def _provider_of(self, model: str) -> tuple[Route, Provider] | None:
        try:
            route = self.resolve(model)
            return route, self.provider(route.provider)
        except ProviderError:
            return None

    def decides_tools_by_grammar(self, model: str) -> bool:
        """Whether ``model`` is a small embedded one whose tool calls are decided under a
        grammar: offered a tool, it calls it whether or not it helps."""
        found = self._provider_of(model)
        if found is None or not capable(found[1], DecidesToolsByGrammar):
            return False
        return found[1].decides_tools_by_grammar(found[0].model)

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int | None:
        """The prompt's length by the model's own tokenizer, where the provider has one."""
        found = self._provider_of(model)
        if found is None:
            return None
        route, provider = found
        if not capable(provider, CountsTokens):
            return None
        try:
            return await provider.count_tokens(route.model, messages)
        except Exception:  # a count is an optimisation: fall back to the estimate
            log.warning("could not count tokens with %s", route.id, exc_info=True)
            return None

    def context_window(self, model: str) -> int | None:
        """The context the configuration grants ``model``: [agent] context_window, or less
        where the provider knows its model's (the embedded model's context_size)."""
        window = self.config.agent.context_window
        found = self._provider_of(model)
        if found is None or not capable(found[1], HasContextWindow):
            return window
        own = found[1].context_window(found[0].model)
        return window if own is None else min(window, own)

    async def warm_up(self) -> None:
        """Load the embedded models the configuration will use, so no request waits for it.

        The default model's failure is raised (the server is not ready); a fallback's is
        logged. The embedded model that is default only because no model was named is not
        loaded when other providers are configured: it costs a gigabyte and may never serve.
        """
        config = self.config
        models = [] if config.default_is_implicit_local else [config.default_model]
        for model in dict.fromkeys([*models, *config.agent.fallback_models]):
            try:
                route = self.resolve(model)
                provider = self.provider(route.provider)
                if capable(provider, WarmsUp):
                    await provider.warm_up(route.model)
            except ProviderError as exc:
                if model in models:
                    raise
                log.warning("fallback %s is not available: %s", model, exc.message)

    async def list_models(self, name: str) -> list[ModelInfo]:
        return await self.provider(name).list_models()

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()


BUILTIN_ALIAS_PROVIDERS = frozenset({"openai", "anthropic", "ollama"})


def _estimate(text: str) -> int:
    """Tokens in ``text`` by the usual rule of thumb for English: four characters a token."""
    return -(-len(text) // 4)


def _exhausted(errors: list[tuple[Route, ProviderError]]) -> ProviderError:
    last = errors[-1][1]
    if len(errors) == 1:
        return last
    tried = "; ".join(f"{r.id}: {e.message}" for r, e in errors)
    combined = ProviderError(
        f"all {len(errors)} models failed ({tried})",
        status=last.status,
        type=last.type,
        code=last.code,
        param=last.param,
        retryable=last.retryable,
        retry_after=last.retry_after,
    )
    return combined


async def _prepend(
    first: X, rest: AsyncGenerator[X, None], slots: Slots
) -> AsyncGenerator[X, None]:
    """The stream with its first batch put back; its provider slot is held until it ends."""
    try:
        yield first
        async for batch in rest:
            yield batch
    finally:
        try:
            await rest.aclose()
        finally:
            slots.release()
