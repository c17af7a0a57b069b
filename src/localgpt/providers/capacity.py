"""A provider's capacity: so many calls at once, so many more waiting, then a 503."""

from __future__ import annotations

import asyncio
import time

from localgpt.providers.errors import ProviderError


class Slots:
    """A provider's capacity: ``limit`` calls at once, ``queue`` more waiting, then 503."""

    def __init__(self, name: str, limit: int, queue: int) -> None:
        self.name = name
        self.limit = limit
        self.queue = queue
        self.waiting = 0
        self.active = 0
        self._semaphore: asyncio.Semaphore | None = None

    async def acquire(self) -> float:
        """Wait for a slot; the seconds waited. A full queue is a 503 (failover may help)."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        if self._semaphore.locked() and self.waiting >= self.queue:
            raise ProviderError(
                f"provider {self.name} is at capacity ({self.limit} running, {self.waiting} "
                "waiting); try again shortly",
                status=503,
                type="server_error",
                code="queue_full",
                retryable=True,
            )
        started = time.monotonic()
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        return time.monotonic() - started

    async def free(self, poll: float = 0.05) -> None:
        """Return once a call would start at once with nobody waiting before it: background
        work (the heartbeat, scheduled jobs) goes after the requests, not among them."""
        while self.waiting or self.active >= self.limit:  # noqa: ASYNC110 (rare, background)
            await asyncio.sleep(poll)

    def release(self) -> None:
        self.active -= 1
        assert self._semaphore is not None
        self._semaphore.release()
