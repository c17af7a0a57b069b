"""A running LocalGPT server, as ``localgpt ask`` and ``localgpt chat`` use it.

The embedded model takes a gigabyte or more of memory and seconds to minutes to load: when a
server already answers on the configured address, the command line talks to it instead of
loading a second copy. It speaks the server's own APIs (Chat Completions for ``ask``, the
native session API for ``chat``) with the key from ``LOCALGPT_API_KEY`` or the config.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from localgpt.agent.events import AgentEvent, ToolEnd, ToolStart
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import TextDelta

if TYPE_CHECKING:
    from localgpt.config import Config

PROBE_SECONDS = 0.5


def server_url(config: Config) -> str:
    """Where the configured server listens, as a client reaches it."""
    return config.server.url


def api_key(config: Config) -> str | None:
    """``LOCALGPT_API_KEY``, else the config's first key that may use sessions."""
    found = os.environ.get("LOCALGPT_API_KEY")
    if found:
        return found
    keys = config.server.api_keys()
    for key in keys:
        if key.scope in ("full", "admin"):
            return key.key
    return keys[0].key if keys else None


def is_localgpt(url: str) -> bool:
    """Whether a LocalGPT server answers at ``url`` (its /health says so)."""
    try:
        resp = httpx.get(f"{url}/health", timeout=PROBE_SECONDS)
        return resp.status_code == 200 and resp.json().get("service") == "localgpt"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _error(resp: httpx.Response) -> ProviderError:
    try:
        error = resp.json().get("error") or {}
        message = error.get("message") or resp.text
    except (ValueError, AttributeError):
        error, message = {}, resp.text or f"HTTP {resp.status_code}"
    return ProviderError(
        str(message), status=resp.status_code, type=error.get("type") or "api_error"
    )


@dataclass
class Remote:
    url: str
    key: str | None

    def client(self, timeout: float | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def default_model(self, fallback: str) -> str:
        """The server's default model (it may run with another config than ours)."""
        async with self.client(5) as client:
            try:
                resp = await client.get("/api/status")
                if resp.status_code == 200:
                    return str(resp.json().get("default_model") or fallback)
            except (httpx.HTTPError, ValueError):
                pass
        return fallback

    async def ask(self, model: str, messages: list[dict[str, Any]]) -> AsyncGenerator[str, None]:
        """A chat completion, streamed: its text pieces."""
        body = {"model": model, "messages": messages, "stream": True}
        async with (
            self.client(None) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as resp,
        ):
            if resp.status_code != 200:
                await resp.aread()
                raise _error(resp)
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise ProviderError(chunk["error"].get("message") or "the stream failed")
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text


class RemoteChat:
    """The chat's sessions on a running server, through its native API."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self._client = remote.client(None)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        resp = await self._client.request(method, path, json=body)
        if resp.status_code >= 400:
            raise _error(resp)
        return resp.json()

    async def session(self, session_id: str | None, model: str | None) -> dict[str, Any] | None:
        """The session to resume, or None if there is none by that id."""
        if session_id is None:
            return None
        try:
            found: dict[str, Any] = await self._call("GET", f"/api/sessions/{session_id}")
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def create(self, model: str | None) -> dict[str, Any]:
        created: dict[str, Any] = await self._call(
            "POST", "/api/sessions", {"model": model} if model else None
        )
        return created

    async def compact(self, session_id: str) -> dict[str, Any]:
        done: dict[str, Any] = await self._call("POST", f"/api/sessions/{session_id}/compact")
        return done

    async def set_model(self, session_id: str, model: str) -> str:
        done = await self._call("POST", f"/api/sessions/{session_id}/model", {"model": model})
        return str(done["model"])

    async def context(self, session_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._call("GET", f"/api/sessions/{session_id}/context")
        return found

    async def turn(
        self, session_id: str, text: str, model: str | None
    ) -> AsyncGenerator[Sequence[AgentEvent], None]:
        """One turn, streamed as the events the chat shows."""
        body: dict[str, Any] = {"message": text, "session_id": session_id}
        if model:
            body["model"] = model
        async with self._client.stream("POST", "/api/chat/stream", json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise _error(resp)
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                kind = event.get("type")
                if kind == "content":
                    yield [TextDelta(event.get("delta") or "")]
                elif kind == "tool_start":
                    yield [ToolStart(event["id"], event["name"], event.get("arguments") or "")]
                elif kind == "tool_end":
                    yield [
                        ToolEnd(
                            event["id"],
                            event["name"],
                            event.get("output") or "",
                            bool(event.get("error")),
                        )
                    ]
                elif kind == "error":
                    raise ProviderError(event.get("message") or "the turn failed")
                elif kind == "done":
                    return
