"""The models a server offers: configured ids, aliases, and what each provider reports.

Provider listings are fetched concurrently with a short timeout and cached briefly; a provider
that is down contributes its last good listing (or nothing) and never fails the whole list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from localgpt.config import EMBEDDING_MODEL
from localgpt.providers.base import ModelInfo
from localgpt.providers.errors import ProviderError
from localgpt.providers.router import Router

log = logging.getLogger("localgpt.providers")

STARTED = int(time.time())
LIST_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    created: int
    owned_by: str


class Catalog:
    def __init__(self, router: Router, ttl: float = 60.0, retry: float = 10.0) -> None:
        self.router = router
        self.ttl = ttl
        self.retry = retry
        self._cache: dict[str, tuple[float, list[ModelInfo]]] = {}
        self._pending: dict[str, asyncio.Task[list[ModelInfo]]] = {}
        self._known: set[str] = set()  # every id a listing has shown, see is_known

    def provider_names(self) -> list[str]:
        names = list(self.router.config.providers)
        if "local" not in names:
            names.append("local")
        return names

    async def _listing(self, name: str) -> list[ModelInfo]:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        task = self._pending.get(name)
        if task is None:
            task = self._pending[name] = asyncio.create_task(self._fetch(name))
            task.add_done_callback(lambda _t: self._pending.pop(name, None))
        return await asyncio.shield(task)

    async def _fetch(self, name: str) -> list[ModelInfo]:
        previous = self._cache.get(name, (0.0, []))[1]
        try:
            async with asyncio.timeout(LIST_TIMEOUT):
                found = await self.router.list_models(name)
        except Exception as exc:  # one provider's listing never fails the whole list
            log.warning("could not list the models of provider %s: %s", name, exc)
            self._cache[name] = (time.monotonic() + self.retry, previous)
            return previous
        self._cache[name] = (time.monotonic() + self.ttl, found)
        return found

    async def entries(self) -> list[ModelEntry]:
        names = self.provider_names()
        listings = await asyncio.gather(*(self._listing(n) for n in names))
        created: dict[str, int] = {}
        discovered: list[ModelEntry] = []
        for name, models in zip(names, listings, strict=True):
            for info in models:
                entry = ModelEntry(f"{name}/{info.id}", info.created or STARTED, name)
                created[entry.id] = entry.created
                discovered.append(entry)
        entries: dict[str, ModelEntry] = {}

        def add(model_id: str, route_id: str, owner: str) -> None:
            if model_id not in entries:
                entries[model_id] = ModelEntry(model_id, created.get(route_id, STARTED), owner)

        agent = self.router.config.agent
        for model in [self.router.config.default_model, *agent.fallback_models]:
            try:
                route = self.router.resolve(model)
            except ProviderError:
                continue
            add(route.id, route.id, route.provider)
        for alias in self.router.aliases:
            try:
                route = self.router.resolve(alias)
            except ProviderError:
                continue  # its provider is not configured
            add(alias, route.id, route.provider)
        for entry in discovered:
            entries.setdefault(entry.id, entry)
        for name in names:
            config = self.router.configured(name)
            for model in config.models if config else ():
                add(f"{name}/{model}", f"{name}/{model}", name)
        if self.router.config.memory.embedding_provider == "local":
            add(EMBEDDING_MODEL, EMBEDDING_MODEL, "local")  # for /v1/embeddings
        self._known.update(entries)
        return list(entries.values())

    def is_known(self, model_id: str) -> bool:
        """Whether the configuration names ``model_id`` (as a default, fallback, alias or
        listed model) or a provider's listing has shown it. Needs no network: what the
        listings show is remembered as they are fetched."""
        if model_id in self._known:
            return True
        config = self.router.config
        named = [config.default_model, *config.agent.fallback_models, *self.router.aliases]
        for name in named:
            try:
                if self.router.resolve(name).id == model_id:
                    self._known.add(model_id)
                    return True
            except ProviderError:
                continue
        provider, _, model = model_id.partition("/")
        settings = self.router.configured(provider)
        return settings is not None and model in settings.models

    async def find(self, model_id: str) -> ModelEntry | None:
        for entry in await self.entries():
            if entry.id == model_id:
                return entry
        return None
