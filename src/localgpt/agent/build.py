"""The one place that builds the assistant: for the server and for the command line alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from localgpt.agent.agent import Agent
from localgpt.agent.conversation import Conversations
from localgpt.agent.sessions import SessionStore
from localgpt.config import Config, Paths
from localgpt.memory.manager import Memory
from localgpt.providers.router import Router

if TYPE_CHECKING:
    from localgpt.mcp.client import McpHub


@dataclass
class Assistant:
    config: Config
    router: Router
    agent: Agent
    memory: Memory | None = None  # None in gateway mode: a pure proxy keeps nothing
    conversations: Conversations | None = None
    mcp: McpHub | None = None  # None without [mcp.servers] (or in gateway mode)

    def start(self) -> None:
        """What runs in the background: the MCP connections."""
        if self.mcp is not None:
            self.mcp.start()

    async def aclose(self) -> None:
        try:
            if self.mcp is not None:
                await self.mcp.aclose()
            if self.memory is not None:
                await self.memory.aclose()
        finally:
            await self.router.aclose()


def build(config: Config, paths: Paths | None = None) -> Assistant:
    """Router, memory, agent and sessions as ``config`` asks for them."""
    router = Router(config)
    if config.agent.gateway_mode:
        return Assistant(config, router, Agent(config, router))
    paths = paths or Paths.from_env()
    memory = Memory(config, paths)
    mcp = None
    if any(s.enabled for s in config.mcp.servers.values()):
        from localgpt.mcp.client import McpHub

        mcp = McpHub(config, paths.state_dir / "mcp")
    agent = Agent(config, router, memory, mcp)
    conversations = Conversations(agent, SessionStore(paths.state_dir / "sessions"))
    return Assistant(config, router, agent, memory, conversations, mcp)
