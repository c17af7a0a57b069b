"""``/mcp``: the memory's MCP server over streamable HTTP, on the running server.

Built on the first request, not at start-up: the ``mcp`` SDK costs half a second to import,
and most servers are never asked. The session manager runs in a task of its own (its task
group must be entered and left in one task) until the server stops. The Gate in front does
what the SDK's own Host/Origin check would (and more: keys, scopes, limits), so that check is
off here; a key reaches ``/mcp`` only if its scope includes the assistant.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from localgpt.api import errors
from localgpt.api.errors import APIError
from localgpt.api.requests import FULL, PERMISSIONS_KEY

PATH = "/mcp"


def _jsonrpc_error(error: APIError) -> Response:
    """The Gate's refusals on /mcp as JSON-RPC errors, so an MCP client shows the reason
    rather than "Server returned an error response"."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": error.message}}
    return Response(orjson.dumps(body), error.status, error.headers, media_type="application/json")


errors.speak(PATH, _jsonrpc_error)


class McpEndpoint:
    def __init__(self) -> None:
        self._app: Any = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    await self._start()
        await self._app(scope, receive, send)

    async def _start(self) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
        from mcp.server.transport_security import TransportSecuritySettings

        from localgpt.mcp.server import build_server

        def memory_of(ctx: Any) -> Any:
            request = ctx.request_context.request
            memory = request.app.state.localgpt.memory
            assert memory is not None  # the route exists only with a memory
            return memory

        def can_write(ctx: Any) -> bool:
            request = ctx.request_context.request
            return bool(request.scope.get(PERMISSIONS_KEY, FULL).write_memory)

        server = build_server(memory_of, can_write)
        server.streamable_http_app(
            # Stateless: a client's next request may reach another worker or replica, which
            # would not know its session; the memory tools need no server-to-client channel.
            stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = server.session_manager
        ready = asyncio.Event()

        async def hold() -> None:
            async with manager.run():
                ready.set()
                await self._stop.wait()

        self._task = asyncio.create_task(hold(), name="mcp-endpoint")
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({self._task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiting.cancel()
            await self._task  # raises what went wrong
        self._app = StreamableHTTPASGIApp(manager)

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                pass


def install(app: FastAPI, enabled: bool) -> McpEndpoint:
    endpoint = McpEndpoint()
    if enabled:
        app.router.routes.append(Route(PATH, endpoint=endpoint, include_in_schema=False))
    return endpoint
