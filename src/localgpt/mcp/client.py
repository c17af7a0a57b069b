"""MCP servers' tools for the assistant: one connection per configured server, kept alive.

Each connection lives in a task of its own, because the SDK's transports hold anyio cancel
scopes that must be entered and left in one task, and because a failed streamable-HTTP post
cancels the body of its ``async with`` (python-sdk #3560): nothing but the owner task may
live there. Calls come from any task. A server that fails to start, dies, or forgets our
session is reported (``status()``: ``doctor``, ``/ready``, the logs) and reconnected with
back-off; the assistant goes on without its tools meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from localgpt.config import Config, McpServerConfig

log = logging.getLogger("localgpt.mcp")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 60.0
PROBE_SECONDS = 15.0
CONNECT_WAIT = 5.0  # a call waits this long for a restarting server before it fails
NAME = re.compile(r"[^A-Za-z0-9_-]")


class McpUnavailable(Exception):
    """The server is down or restarting, or its connection broke during the call."""


class McpToolError(Exception):
    """The server ran the tool and reported an error, or the call timed out."""


@dataclass
class McpTool:
    """One of a server's tools as the model sees it: ``mcp_SERVER_TOOL``."""

    server: str
    name: str  # the server's own name for it
    definition: dict[str, Any]

    @property
    def function(self) -> str:
        return str(self.definition["function"]["name"])


@dataclass
class Status:
    connected: bool = False
    tools: int = 0
    restarts: int = 0
    last_error: str | None = None
    protocol: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def function_name(server: str, tool: str) -> str:
    """``mcp_SERVER_TOOL`` within OpenAI's function name rule (``[A-Za-z0-9_-]{1,64}``)."""
    return NAME.sub("_", f"mcp_{server}_{tool}")[:64]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _lost(exc: Exception) -> bool:
    """A closed connection, or a streamable-HTTP session the server no longer knows."""
    from mcp.types import CONNECTION_CLOSED, INVALID_REQUEST

    from mcp import MCPError

    return isinstance(exc, MCPError) and (
        exc.code == CONNECTION_CLOSED
        or (
            exc.code == INVALID_REQUEST
            and exc.error.message in ("Session not found", "Session terminated")
        )
    )


def result_text(result: Any) -> str:
    """A tool result as the model reads it: its text parts, a line for anything else."""
    from mcp.types import EmbeddedResource, ImageContent, ResourceLink, TextContent

    parts: list[str] = []
    for item in result.content:
        if isinstance(item, TextContent):
            parts.append(item.text)
        elif isinstance(item, ImageContent):
            parts.append(f"[an image, {item.mime_type}, not shown]")
        elif isinstance(item, ResourceLink):
            parts.append(f"[resource {item.uri}]")
        elif isinstance(item, EmbeddedResource):
            text = getattr(item.resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource {item.resource.uri}]")
        else:
            parts.append(f"[{getattr(item, 'type', 'content')} not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class McpConnection:
    """One configured server: connect, list its tools, watch it, reconnect with back-off."""

    def __init__(self, name: str, settings: McpServerConfig, errlog: Path) -> None:
        self.name = name
        self.settings = settings
        self.errlog_path = errlog
        self.status = Status()
        self.tools: list[McpTool] = []
        self._client: Any = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()  # set: leave the session (stopping, or found dead)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.backoff_first = BACKOFF_FIRST
        self.probe_seconds = PROBE_SECONDS

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}")

    async def aclose(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _open(self, stack: AsyncExitStack, errlog: TextIO) -> Any:
        from mcp import Client, StdioServerParameters, stdio_client

        s = self.settings
        if s.command is not None:
            params = StdioServerParameters(
                command=s.command, args=list(s.args), env=dict(s.env) or None, cwd=s.cwd
            )
            transport: Any = stdio_client(params, errlog=errlog)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            assert s.url is not None
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=dict(s.headers), timeout=httpx2.Timeout(30, read=s.timeout + 30)
                )
            )
            transport = streamable_http_client(s.url, http_client=http)
        # cache=None: a listing goes to the server (it is the liveness probe too).
        client = Client(transport, read_timeout_seconds=s.timeout, cache=None)
        return await stack.enter_async_context(client)

    def _listed(self, tools: list[Any]) -> list[McpTool]:
        out: list[McpTool] = []
        seen: set[str] = set()
        for tool in tools:
            fn = function_name(self.name, tool.name)
            if fn in seen:
                continue
            seen.add(fn)
            schema = tool.input_schema or {"type": "object", "properties": {}}
            description = (tool.description or tool.name).strip()
            definition = {
                "type": "function",
                "function": {
                    "name": fn,
                    "description": f"{description} (from the MCP server {self.name})"[:1024],
                    "parameters": schema,
                },
            }
            out.append(McpTool(self.name, tool.name, definition))
        return out

    async def _run(self) -> None:
        delay = self.backoff_first
        self.errlog_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.errlog_path.open("a", encoding="utf-8") as errlog:
            while not self._stopping:
                self._wake.clear()
                connected = False
                try:
                    async with AsyncExitStack() as stack:  # entered and left in this task
                        client = await self._open(stack, errlog)
                        self.tools = self._listed((await client.list_tools()).tools)
                        self._client = client
                        connected = True
                        self.status.connected = True
                        self.status.tools = len(self.tools)
                        self.status.last_error = None
                        self.status.protocol = str(getattr(client, "protocol_version", "") or "")
                        self._ready.set()
                        log.info("MCP server %s: connected, %d tools", self.name, len(self.tools))
                        await self._watch(client)
                except Exception as exc:  # a crashed transport, a failed spawn, a refusal
                    self.status.last_error = "; ".join(
                        f"{type(e).__name__}: {e}" for e in _leaves(exc)
                    )[:500]
                    log.warning("MCP server %s: %s", self.name, self.status.last_error)
                finally:
                    self._ready.clear()
                    self._client = None
                    self.status.connected = False
                if self._stopping:
                    break
                if connected:
                    delay = self.backoff_first  # it was up: retry soon, then back off
                self.status.restarts += 1
                pause = min(delay, BACKOFF_MAX) * random.uniform(0.8, 1.2)
                log.info("MCP server %s: reconnecting in %.1f s", self.name, pause)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), pause)  # aclose() cuts it short
                except TimeoutError:
                    pass
                delay *= 2

    async def _watch(self, client: Any) -> None:
        """Park until told to leave; probe an idle server so a silent death is noticed."""
        while not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.probe_seconds)
            except TimeoutError:
                try:
                    self.tools = self._listed((await client.list_tools()).tools)
                    self.status.tools = len(self.tools)
                except Exception as exc:
                    if _lost(exc):
                        self.status.last_error = "the connection closed"
                        return
                    raise

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        if not self._ready.is_set() and not await self.wait_ready(CONNECT_WAIT):
            raise McpUnavailable(
                f"the MCP server {self.name} is not connected"
                + (f" ({self.status.last_error})" if self.status.last_error else "")
            )
        client = self._client
        from mcp import MCPError

        try:
            result = await client.call_tool(
                tool, arguments, read_timeout_seconds=self.settings.timeout
            )
        except MCPError as exc:
            if _lost(exc):
                if self._client is client:  # no new caller gets the dead client
                    self._ready.clear()
                    self._wake.set()
                raise McpUnavailable(
                    f"the MCP server {self.name} closed the connection during {tool}; it is "
                    "being restarted"
                ) from None
            raise McpToolError(f"{tool}: {exc.error.message}") from None
        text = result_text(result)
        if result.is_error:
            raise McpToolError(text or f"{tool} failed")
        return text


class McpHub:
    """Every configured MCP server; their tools, narrowed to what a caller may use."""

    def __init__(self, config: Config, log_dir: Path) -> None:
        self.connections = {
            name: McpConnection(name, settings, log_dir / f"{name}.log")
            for name, settings in config.mcp.servers.items()
            if settings.enabled
        }

    def start(self) -> None:
        for connection in self.connections.values():
            connection.start()

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connections.values()))

    def tools(self, allowed: frozenset[str] | None) -> list[McpTool]:
        """The tools of the connected servers ``allowed`` names (None: all of them)."""
        return [
            tool
            for name, connection in self.connections.items()
            if allowed is None or name in allowed
            for tool in (connection.tools if connection.status.connected else ())
        ]

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> str:
        return await self.connections[tool.server].call(tool.name, arguments)

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "connected": c.status.connected,
                "transport": "stdio" if c.settings.command is not None else "http",
                "tools": c.status.tools,
                "restarts": c.status.restarts,
                "last_error": c.status.last_error,
            }
            for name, c in self.connections.items()
        }
