"""The one place that builds the assistant: for the server and for the command line alike."""

from __future__ import annotations

from dataclasses import dataclass

from localgpt.agent.agent import Agent
from localgpt.agent.conversation import Conversations
from localgpt.agent.sessions import SessionStore
from localgpt.config import Config, Paths
from localgpt.memory.manager import Memory
from localgpt.providers.router import Router


@dataclass
class Assistant:
    config: Config
    router: Router
    agent: Agent
    memory: Memory | None = None  # None in gateway mode: a pure proxy keeps nothing
    conversations: Conversations | None = None

    async def aclose(self) -> None:
        try:
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
    agent = Agent(config, router, memory)
    conversations = Conversations(agent, SessionStore(paths.state_dir / "sessions"))
    return Assistant(config, router, agent, memory, conversations)
