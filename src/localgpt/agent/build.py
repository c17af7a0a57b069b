"""The one place that builds the assistant: for the server and for the command line alike."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localgpt.agent.agent import Agent
from localgpt.agent.conversation import Conversations
from localgpt.agent.sessions import Sessions, SessionStore
from localgpt.config import Config, Paths
from localgpt.memory.manager import Memory
from localgpt.providers.router import Router

if TYPE_CHECKING:
    from localgpt.mcp.client import McpHub
    from localgpt.shared.durable import PgSessionStore
    from localgpt.shared.hot import HotState


@dataclass
class Assistant:
    config: Config
    router: Router
    agent: Agent
    memory: Memory | None = None  # None in gateway mode: a pure proxy keeps nothing
    conversations: Conversations | None = None
    mcp: McpHub | None = None  # None without [mcp.servers] (or in gateway mode)
    hot: HotState | None = None  # [state] url: Redis
    sessions: PgSessionStore | None = None  # [storage] url: sessions in PostgreSQL

    def start(self) -> None:
        """What runs in the background: the MCP connections."""
        if self.mcp is not None:
            self.mcp.start()

    async def open(self) -> None:
        """Connect what needs connecting before the first request: PostgreSQL's tables."""
        if self.sessions is not None:
            await asyncio.to_thread(self.sessions.open)

    async def aclose(self) -> None:
        try:
            if self.mcp is not None:
                await self.mcp.aclose()
            if self.memory is not None:
                await self.memory.aclose()
            if self.sessions is not None:
                await asyncio.to_thread(self.sessions.close)
            if self.hot is not None:
                await self.hot.aclose()
        finally:
            await self.router.aclose()


def build(config: Config, paths: Paths | None = None, hot: HotState | None = None) -> Assistant:
    """Router, memory, agent and sessions as ``config`` asks for them (``hot``: the Redis
    client the caller made already, for the Gate's rate limits)."""
    router = Router(config)
    if hot is None and config.state.url is not None:
        from localgpt.shared.hot import HotState

        hot = HotState(config.state.url)
    router.shared = hot
    if config.agent.gateway_mode:
        return Assistant(config, router, Agent(config, router), hot=hot)
    paths = paths or Paths.from_env()
    memory = Memory(config, paths)
    mcp = None
    if any(s.enabled for s in config.mcp.servers.values()):
        from localgpt.mcp.client import McpHub

        mcp = McpHub(config, paths.state_dir / "mcp")
    agent = Agent(config, router, memory, mcp)
    if hot is not None:
        from localgpt.agent.stash import SharedStash

        agent.stash = SharedStash(hot)
    store: Sessions = SessionStore(paths.state_dir / "sessions")
    pg = None
    if config.storage.url is not None:
        from localgpt.shared.durable import PgSessionStore

        store = pg = PgSessionStore(config.storage.url, config.storage.pool_size)
    conversations = Conversations(agent, store, hot)
    return Assistant(config, router, agent, memory, conversations, mcp, hot, pg)
