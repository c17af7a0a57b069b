"""Small fake model servers that speak the real wire formats over HTTP, for the tests.

Each runs an aiohttp application on a loopback port in a thread of its own. A test scripts
what a model answers with ``Script`` (text pieces, tool calls with argument pieces, errors,
delays, a stream cut mid-way) and reads back what the fake received and when a client hung up.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeCall:
    name: str
    arguments: list[str]  # pieces, streamed one per chunk
    id: str | None = None


@dataclass
class Script:
    """What the fake model answers to one request."""

    text: list[str] | None = None  # None: echo the last user message, word by word
    tool_calls: list[FakeCall] = field(default_factory=list)
    finish_reason: str | None = None  # None: "tool_calls" if there are calls, else "stop"
    status: int = 200
    error: dict[str, Any] | None = None  # the error body for a status >= 400
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before each chunk
    first_delay: float = 0.0  # before the answer starts (non-stream too)
    cut_after: int | None = None  # close the connection after this many chunks
    usage: tuple[int, int] | None = (11, 7)  # None: the answer carries no usage at all
    mid_stream_error: dict[str, Any] | None = None  # sent instead of the finish chunk
    interleave: bool = False  # stream the pieces of several tool calls in turn, mixed
    thinking: tuple[str, str] | None = None  # Anthropic: a thinking block (text, signature)


@dataclass
class Received:
    path: str
    body: Any
    headers: dict[str, str]


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    p.get("text", "")
                    for p in content
                    if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


def pieces_of(script: Script, messages: list[dict[str, Any]]) -> list[str]:
    if script.text is not None:
        return script.text
    words = f"You said: {last_user_text(messages)}".split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeServer:
    """Runs an aiohttp app in a background thread; subclasses add the routes."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Script]] = {}
        # (text, script): a request whose messages contain the text gets the script, first.
        self.rules: list[tuple[str, Script]] = []
        self.requests: list[Received] = []
        self.disconnects: list[tuple[str, float]] = []
        self.models: list[str] = ["fake-model"]
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- scripting ------------------------------------------------------------------

    def script(self, model: str, *scripts: Script) -> None:
        """Queue answers for ``model``; the last one repeats."""
        self.scripts[model] = list(scripts)

    def next_script(self, model: str, body: Any = None) -> Script:
        if self.rules and body is not None:
            text = json.dumps(body)
            for needle, script in self.rules:
                if needle in text:
                    return script
        queue = self.scripts.get(model)
        if not queue:
            return Script()
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def reset(self) -> None:
        self.rules.clear()
        self.scripts.clear()
        self.requests.clear()
        self.disconnects.clear()

    def last_body(self) -> Any:
        return self.requests[-1].body

    # --- running --------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> FakeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- helpers for handlers -------------------------------------------------------

    async def record(self, request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        self.requests.append(
            Received(request.path, body, {k.lower(): v for k, v in request.headers.items()})
        )
        return body

    async def wait_or_disconnect(self, request: web.Request, seconds: float, model: str) -> bool:
        """Sleep, noticing a client that hangs up meanwhile; False if it did."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnects.append((model, time.monotonic()))
                return False
            await asyncio.sleep(min(0.01, max(0.0, end - time.monotonic())))
        return True

    async def write_or_disconnect(self, resp: web.StreamResponse, data: bytes, model: str) -> bool:
        try:
            await resp.write(data)
            return True
        except (ConnectionError, RuntimeError):
            self.disconnects.append((model, time.monotonic()))
            return False

    @staticmethod
    def cut(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
