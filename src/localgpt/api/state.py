"""What the routes share: built once at start-up, closed at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localgpt.agent.agent import Agent
from localgpt.agent.build import Assistant, build
from localgpt.agent.conversation import Conversations
from localgpt.config import Config, Paths
from localgpt.memory.manager import Memory
from localgpt.providers.catalog import Catalog
from localgpt.providers.errors import ProviderError
from localgpt.providers.router import Router

log = logging.getLogger("localgpt.api")
PROBE_SECONDS = 10.0
PROBE_TIMEOUT = 3.0
UNREACHABLE = frozenset({"upstream_unreachable", "upstream_timeout", "upstream_error"})
MODEL_KEY = "localgpt.model"  # set on the ASGI scope once a model has answered
OTHER_MODEL = "other"  # the metrics label of a model nobody configured or listed

if TYPE_CHECKING:
    from localgpt.agent.heartbeat import Autonomy
    from localgpt.api.metrics import Metrics
    from localgpt.api.render import Observer
    from localgpt.api.responses.store import ResponseStore
    from localgpt.mcp.client import McpHub
    from localgpt.memory.embedder import Embedder
    from localgpt.providers.events import Usage
    from localgpt.shared.hot import HotState


@dataclass
class AppState:
    config: Config
    router: Router
    agent: Agent
    catalog: Catalog
    memory: Memory | None = None  # None in gateway mode: a pure proxy keeps nothing
    conversations: Conversations | None = None
    _embedder: Embedder | None = None
    metrics: Metrics | None = None
    responses: ResponseStore | None = None  # None when [responses] store is off
    mcp: McpHub | None = None  # None without [mcp.servers]
    assistant: Assistant | None = None  # what build() made, for its shared backends
    autonomy: Autonomy | None = None  # the heartbeat and jobs; None in gateway mode
    # Set once the default model can answer (an embedded one is loaded and warm).
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    unavailable: str | None = None  # why the default model failed to load, if it did
    _probe: tuple[float, str | None] | None = None  # see default_unreachable

    @classmethod
    def build(cls, config: Config, hot: HotState | None = None) -> AppState:
        made = build(config, hot=hot)
        state = cls(
            config,
            made.router,
            made.agent,
            Catalog(made.router),
            made.memory,
            made.conversations,
        )
        state.mcp = made.mcp
        state.assistant = made
        if made.conversations is not None:
            from localgpt.agent.heartbeat import Autonomy
            from localgpt.agent.schedule import RunLog, SystemClock

            runs = RunLog(Paths.from_env().state_dir / "runs.jsonl")
            state.autonomy = Autonomy(
                config, made.agent, made.conversations.store, runs, SystemClock(), made.hot
            )
        if config.responses.store and config.storage.url is not None:
            from localgpt.shared.durable import PgResponseStore

            state.responses = PgResponseStore(
                config.storage.url, config.responses.retention_days, config.storage.pool_size
            )
        elif config.responses.store:
            from localgpt.api.responses.store import SQLiteResponseStore

            path = Paths.from_env().state_dir / "responses.sqlite3"
            state.responses = SQLiteResponseStore(path, config.responses.retention_days)
        return state

    def observer(self, model: str, stream: bool, scope: MutableMapping[str, Any]) -> Observer:
        """Records a finished completion: time to first content, tokens in and out. The
        request is labelled with the model that served it, if the configuration names it or
        a provider lists it; any other under "other": an upstream that answers every name
        would otherwise let clients grow /metrics without bound by making names up."""
        model = model if self.catalog.is_known(model) else OTHER_MODEL
        scope[MODEL_KEY] = model
        metrics = self.metrics

        def observe(first: float | None, usage: Usage | None) -> None:
            if metrics is not None:
                metrics.completion(
                    model,
                    stream,
                    first,
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                )

        return observe

    async def default_unreachable(self) -> str | None:
        """Why the default model's remote provider cannot answer, or None: asked of the
        provider (its model listing) at most every ``PROBE_SECONDS``. A provider that
        answers at all, even with a 4xx, is reachable; a refused connection, a timeout or
        a 5xx is not."""
        now = time.monotonic()
        if self._probe is not None and self._probe[0] > now:
            return self._probe[1]
        why: str | None = None
        try:
            route = self.router.resolve(self.config.default_model)
            settings = self.router.configured(route.provider)
            if settings is not None and settings.type != "local":
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self.router.list_models(route.provider)
        except ProviderError as exc:
            if exc.code in UNREACHABLE or exc.status >= 500:
                why = exc.message
        except TimeoutError:
            why = f"the default model's provider did not answer within {PROBE_TIMEOUT:g} s"
        self._probe = (now + PROBE_SECONDS, why)
        return why

    def embedder(self) -> Embedder:
        """The MiniLM embedder, shared with the memory when there is one."""
        if self.memory is not None:
            return self.memory.embedder()
        if self._embedder is None:
            from localgpt.memory.embedder import Embedder

            self._embedder = Embedder()
        return self._embedder

    async def aclose(self) -> None:
        try:
            if self.autonomy is not None:
                await self.autonomy.scheduler.aclose()
            if self.responses is not None:
                await self.responses.aclose()
            if self.assistant is not None:
                await self.assistant.aclose()  # the memory, the MCP servers, the backends
            elif self.memory is not None:
                await self.memory.aclose()
        finally:
            if self.assistant is None:
                await self.router.aclose()


async def backends_down(state: AppState) -> str | None:
    """Why a configured shared backend does not answer, or None (``/ready``)."""
    from localgpt.shared.errors import BackendDown

    made = state.assistant
    checks: list[tuple[str, Any]] = []
    if made is not None and made.hot is not None:
        checks.append(("Redis ([state])", made.hot.ping))
    if made is not None and made.sessions is not None:
        sessions = made.sessions
        checks.append(("PostgreSQL ([storage])", lambda: asyncio.to_thread(sessions.ping)))
    for name, check in checks:
        try:
            await asyncio.wait_for(check(), 3)
        except BackendDown as exc:
            log.warning("%s", exc.message)  # the details stay in the log
            return f"{name} does not answer"
        except TimeoutError:
            return f"{name} did not answer within 3 s"
    return None
