"""The tools the assistant runs itself, and which of them a request may use.

``memory_search``, ``memory_get`` and ``web_fetch`` are always there; ``memory_save`` only for
callers allowed to write memory. ``bash`` and ``write_file`` exist only when ``[tools] shell``
or ``[tools] file_write`` turns them on, and even then only for callers allowed to run them
(the local command line; on the HTTP server, a key whose scope says so).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localgpt.agent import fetch
from localgpt.config import Config
from localgpt.memory.manager import Memory

if TYPE_CHECKING:
    from localgpt.mcp.client import McpHub, McpTool


class ToolError(Exception):
    """A failed tool call; the message goes back to the model as the tool's result."""


@dataclass(frozen=True)
class Permissions:
    """What a caller may let the assistant do beyond reading memory and the web."""

    assistant: bool = True  # False: this caller gets a plain proxy (a gateway-scoped key)
    write_memory: bool = True
    local_tools: bool = False  # bash and write_file, where the config enables them
    caller: str | None = None  # which key: its tool turns and sessions are its own
    admin: bool = False  # sees every key's sessions
    mcp: frozenset[str] | None = None  # the MCP servers whose tools it may use; None: all


Handler = Callable[[dict[str, Any]], Awaitable[str]]


def _fn(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


MEMORY_SEARCH = _fn(
    "memory_search",
    "Search the user's own notes, only for a question about the user or their notes "
    "that the notes already shown do not answer; never for general knowledge.",
    {
        "query": {"type": "string", "description": "What to look for, in natural language"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 20},
    },
    ["query"],
)
MEMORY_GET = _fn(
    "memory_get",
    "Read a whole note of the memory workspace, or some of its lines, only when the user "
    "asks for a file or a note shown is cut off.",
    {
        "path": {"type": "string", "description": "Path inside the workspace, e.g. MEMORY.md"},
        "start_line": {"type": "integer", "minimum": 1},
        "end_line": {"type": "integer", "minimum": 1},
    },
    ["path"],
)
MEMORY_SAVE = _fn(
    "memory_save",
    "Save a durable fact or note to memory: today's log by default, or "
    "MEMORY.md for long-lived facts about the user.",
    {"content": {"type": "string"}, "target": {"type": "string", "enum": ["daily", "memory"]}},
    ["content"],
)
WEB_FETCH = _fn(
    "web_fetch",
    "Fetch a public web page and return its text.",
    {"url": {"type": "string", "description": "An http or https URL"}},
    ["url"],
)
BASH = _fn(
    "bash",
    "Run a shell command in the workspace and return its output.",
    {"command": {"type": "string"}},
    ["command"],
)
WRITE_FILE = _fn(
    "write_file",
    "Write a file inside the workspace (replaces it if it exists).",
    {"path": {"type": "string"}, "content": {"type": "string"}},
    ["path", "content"],
)


class Toolbox:
    """Server tools for one request: their definitions for the model and their handlers."""

    def __init__(
        self,
        config: Config,
        memory: Memory,
        permissions: Permissions,
        mcp: McpHub | None = None,
    ) -> None:
        self.config = config
        self.memory = memory
        self.mcp = mcp
        self.handlers: dict[str, Handler] = {
            "memory_search": self._search,
            "memory_get": self._get,
            "web_fetch": self._fetch,
        }
        self.definitions = [MEMORY_SEARCH, MEMORY_GET, WEB_FETCH]
        if permissions.write_memory:
            self.handlers["memory_save"] = self._save
            self.definitions.append(MEMORY_SAVE)
        if permissions.local_tools and config.tools.shell:
            self.handlers["bash"] = self._bash
            self.definitions.append(BASH)
        if permissions.local_tools and config.tools.file_write:
            self.handlers["write_file"] = self._write
            self.definitions.append(WRITE_FILE)
        if mcp is not None:
            for tool in mcp.tools(permissions.mcp):
                if tool.function not in self.handlers:  # never in place of our own
                    self.add(tool.definition, self._mcp_handler(mcp, tool))

    def add(self, definition: dict[str, Any], handler: Handler) -> None:
        """One more tool for this request (the heartbeat's own, an MCP server's)."""
        self.handlers[definition["function"]["name"]] = handler
        self.definitions.append(definition)

    @staticmethod
    def _mcp_handler(mcp: McpHub, tool: McpTool) -> Handler:
        async def call(args: dict[str, Any]) -> str:
            from localgpt.mcp.client import McpToolError, McpUnavailable

            try:
                return await mcp.call(tool, args)
            except (McpToolError, McpUnavailable) as exc:
                raise ToolError(str(exc)) from None

        return call

    def only(self, names: set[str]) -> Toolbox:
        """This toolbox narrowed to some of its tools (the memory flush offers one)."""
        self.handlers = {k: v for k, v in self.handlers.items() if k in names}
        self.definitions = [d for d in self.definitions if d["function"]["name"] in names]
        return self

    def without(self, names: set[str]) -> list[dict[str, Any]]:
        """Definitions not shadowed by the client's own tools of the same name."""
        return [d for d in self.definitions if d["function"]["name"] not in names]

    async def run(self, name: str, arguments: str) -> str:
        handler = self.handlers.get(name)
        if handler is None:
            raise ToolError(f"unknown tool {name}")
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            raise ToolError("the arguments are not valid JSON") from None
        if not isinstance(args, dict):
            raise ToolError("the arguments must be a JSON object")
        return await handler(args)

    @staticmethod
    def _text(args: dict[str, Any], key: str) -> str:
        value = args.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ToolError(f"'{key}' must be a non-empty string")
        return value

    async def _search(self, args: dict[str, Any]) -> str:
        query = self._text(args, "query")
        limit = args.get("limit", 5)
        limit = min(max(limit, 1), 20) if isinstance(limit, int) else 5
        results = await self.memory.search(query, limit)
        if not results:
            return "No notes match: answer from what you know, or say you do not know."
        return json.dumps([r.as_hit() for r in results], ensure_ascii=False)

    async def _get(self, args: dict[str, Any]) -> str:
        from localgpt.memory.workspace import WorkspaceError

        start, end = args.get("start_line"), args.get("end_line")
        try:
            return await self.memory.read(
                self._text(args, "path"),
                start if isinstance(start, int) else None,
                end if isinstance(end, int) else None,
            )
        except WorkspaceError as exc:
            raise ToolError(str(exc)) from None

    async def _save(self, args: dict[str, Any]) -> str:
        target = args.get("target", "daily")
        if target not in ("daily", "memory"):
            raise ToolError("'target' must be 'daily' or 'memory'")
        content = self._text(args, "content")
        limit = self.config.tools.memory_save_max_bytes
        if len(content.encode()) > limit:
            raise ToolError(
                f"'content' is {len(content.encode())} bytes; a note may have at most {limit}: "
                "save the facts worth keeping, not whole documents"
            )
        path = await self.memory.save(content, target)
        return f"Saved to {path}."

    async def _fetch(self, args: dict[str, Any]) -> str:
        tools = self.config.tools
        try:
            page = await fetch.fetch(
                self._text(args, "url"),
                max_bytes=tools.web_fetch_max_bytes,
                allow=tools.web_fetch_allow,
            )
        except fetch.FetchError as exc:
            raise ToolError(str(exc)) from None
        note = " (truncated)" if page["truncated"] else ""
        return f"{page['url']} [{page['status']}]{note}\n\n{page['text']}"

    async def _bash(self, args: dict[str, Any]) -> str:
        command = self._text(args, "command")
        timeout = self.config.tools.bash_timeout_ms / 1000
        process = await asyncio.create_subprocess_shell(
            command,
            cwd=self.memory.workspace.root,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ToolError(f"the command timed out after {timeout:g} s") from None
        text = output.decode("utf-8", "replace")[-self.config.tools.web_fetch_max_bytes :]
        return f"exit status {process.returncode}\n{text}"

    async def _write(self, args: dict[str, Any]) -> str:
        from localgpt.memory.workspace import WorkspaceError, atomic_write

        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("'content' must be a string")
        try:
            path = self.memory.workspace.resolve(self._text(args, "path"))
        except WorkspaceError as exc:
            raise ToolError(str(exc)) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(atomic_write, path, content.encode("utf-8"))
        root = self.memory.workspace.root.resolve()
        return f"Wrote {len(content)} characters to {path.relative_to(root)}."
