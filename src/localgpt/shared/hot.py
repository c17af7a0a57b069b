"""Hot state in Redis, for workers and replicas: rate-limit buckets, failover cooldowns, the
tool stash and locks, each with a time to live.

A bucket is checked and taken in one Lua script on Redis's own clock, so a client's limit
holds exactly however many processes it is spread over. A lock is a key set only if absent,
with a random token and an expiry, released only by its holder. Every call is bounded by a
short socket timeout: Redis down is ``BackendDown`` (the API's 503), never a hang, and the
client reconnects by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from localgpt.shared.errors import BackendDown

log = logging.getLogger("localgpt.shared")
PREFIX = "localgpt:"

# KEYS[1] the bucket; ARGV: tokens per second, burst. Returns the seconds to wait, "0" if taken.
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
# KEYS[1] the lock; ARGV[1] the holder's token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LockBusy(Exception):
    """Somebody else holds the lock, and the caller would not wait."""


class HotState:
    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.redis = aioredis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, retry_on_timeout=False
        )
        self._take = self.redis.register_script(TAKE)
        self._release = self.redis.register_script(RELEASE)

    async def aclose(self) -> None:
        await self.redis.aclose()

    @asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[None]:
        import redis

        try:
            yield
        except (redis.RedisError, OSError) as exc:  # down, timed out, read-only, out of memory
            raise BackendDown("state", f"Redis failed ({what}): {exc}") from None

    async def ping(self) -> None:
        async with self._call("ping"):
            await self.redis.ping()

    # --- rate limits ------------------------------------------------------------------

    async def take(self, client: str, per_minute: int, burst: int) -> float:
        """0 if the request may go, else the seconds until it could (shared by every
        process)."""
        async with self._call("rate limit"):
            wait = await self._take(
                keys=[f"{PREFIX}bucket:{client}"], args=[per_minute / 60, burst]
            )
        return float(wait)

    # --- the tool stash ---------------------------------------------------------------

    async def stash_get(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        async with self._call("tool stash"):
            values = await self.redis.mget([f"{PREFIX}stash:{k}" for k in keys])
        return {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def stash_put(self, key: str, value: Any, ttl: float) -> None:
        async with self._call("tool stash"):
            await self.redis.set(
                f"{PREFIX}stash:{key}", json.dumps(value, ensure_ascii=False), px=int(ttl * 1000)
            )

    # --- failover cooldowns -----------------------------------------------------------

    async def cool(self, route: str, seconds: float) -> None:
        async with self._call("cooldown"):
            await self.redis.set(f"{PREFIX}cool:{route}", "1", px=int(seconds * 1000))

    async def cooling(self, routes: list[str]) -> set[str]:
        if not routes:
            return set()
        async with self._call("cooldown"):
            values = await self.redis.mget([f"{PREFIX}cool:{r}" for r in routes])
        return {r for r, v in zip(routes, values, strict=True) if v is not None}

    # --- locks ------------------------------------------------------------------------

    async def claim(self, name: str, ttl: float) -> bool:
        """True for the one process that claims ``name`` first (a scheduled run's time)."""
        async with self._call("claim"):
            return bool(await self.redis.set(f"{PREFIX}{name}", "1", nx=True, px=int(ttl * 1000)))

    @asynccontextmanager
    async def lock(self, name: str, ttl: float, wait: float | None = None) -> AsyncIterator[None]:
        """Hold ``name`` across every process for at most ``ttl`` seconds. ``wait``: how
        long to wait for it (None: as long as it takes; 0: not at all, ``LockBusy``)."""
        key, token = f"{PREFIX}lock:{name}", os.urandom(16).hex()
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        delay = 0.01
        while True:
            try:
                async with self._call("lock"):
                    taken = await self.redis.set(key, token, nx=True, px=int(ttl * 1000))
            except BaseException:
                # Cancelled or timed out after Redis may have set it: release what is ours.
                await self._release_quietly(key, token, name)
                raise
            if taken:
                break
            if deadline is not None and loop.time() >= deadline:
                raise LockBusy(name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            await self._release_quietly(key, token, name)

    async def _release_quietly(self, key: str, token: str, name: str) -> None:
        try:
            await asyncio.shield(self._release(keys=[key], args=[token]))
        except Exception as exc:  # it expires by itself
            log.warning("could not release the lock %s: %s", name, exc)
