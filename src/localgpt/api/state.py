"""What the routes share: built once at start-up, closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from localgpt.agent.agent import Agent
from localgpt.config import Config
from localgpt.providers.catalog import Catalog
from localgpt.providers.router import Router


@dataclass
class AppState:
    config: Config
    router: Router
    agent: Agent
    catalog: Catalog

    @classmethod
    def build(cls, config: Config) -> AppState:
        router = Router(config)
        return cls(config, router, Agent(config, router), Catalog(router))

    async def aclose(self) -> None:
        await self.router.aclose()
