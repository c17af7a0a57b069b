"""The memory as an MCP server, for Claude Desktop, Claude Code, Cursor and other assistants.

Three tools: ``memory_search``, ``memory_get`` and, unless read-only, ``memory_save``. Over
stdio (``localgpt mcp``) the process opens the memory itself; over streamable HTTP (``/mcp``
on the running server) the tools use the server's memory, behind the same keys: the Gate
admits only keys whose scope includes the assistant, and a key that may not write memory
gets an error from ``memory_save``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from localgpt import __version__

if TYPE_CHECKING:
    from localgpt.memory.manager import Memory

INSTRUCTIONS = (
    "The user's own memory: markdown notes kept by LocalGPT. Search it before answering "
    "a question about the user, their projects or their past decisions; save durable facts "
    "the user wants remembered."
)
MemoryOf = Callable[["Context[Any, Any]"], "Memory"]
CanWrite = Callable[["Context[Any, Any]"], bool]


def build_server(memory_of: MemoryOf, can_write: CanWrite, read_only: bool = False) -> MCPServer:
    """An MCPServer whose tools reach the memory through ``memory_of`` (per request: over
    HTTP the memory is the running server's)."""
    server = MCPServer("localgpt-memory", version=__version__, instructions=INSTRUCTIONS)

    @server.tool()
    async def memory_search(
        query: Annotated[str, Field(min_length=1, description="What to look for")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=20, description="How many notes at most")] = 5,
    ) -> str:
        """Search the user's notes by keyword and meaning; the best matching passages, with
        their file and lines."""
        results = await memory_of(ctx).search(query, limit)
        return json.dumps([r.as_hit() for r in results], ensure_ascii=False)

    @server.tool()
    async def memory_get(
        path: Annotated[str, Field(min_length=1, description="e.g. MEMORY.md")],
        ctx: Context,
        start_line: Annotated[int | None, Field(ge=1)] = None,
        end_line: Annotated[int | None, Field(ge=1)] = None,
    ) -> str:
        """Read a note of the memory workspace, whole or some of its lines."""
        from localgpt.memory.workspace import WorkspaceError

        try:
            return await memory_of(ctx).read(path, start_line, end_line)
        except WorkspaceError as exc:
            raise ToolError(str(exc)) from None

    if not read_only:

        @server.tool()
        async def memory_save(
            content: Annotated[str, Field(min_length=1, max_length=8192)],
            ctx: Context,
            target: Annotated[
                str, Field(pattern="^(daily|memory)$", description="daily log or MEMORY.md")
            ] = "memory",
        ) -> str:
            """Save a durable fact to the user's memory: MEMORY.md by default, or today's
            log."""
            if not can_write(ctx):
                raise ToolError("this key may not write memory (its scope is read-only)")
            path = await memory_of(ctx).save(content, target)
            return f"Saved to {path}."

    return server


def serve_stdio(read_only: bool, config_path: Path | None = None) -> None:
    """``localgpt mcp``: the memory over stdio, until the client closes it."""
    import sys

    import anyio

    from localgpt.config import load_config
    from localgpt.memory.manager import Memory

    # The wire is stdout: nothing else may be written there, even at exit.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    config, _ = load_config(config_path)
    memory = Memory(config)
    server = build_server(lambda ctx: memory, lambda ctx: not read_only, read_only)

    async def main() -> None:
        memory.workspace.ensure()
        await memory.start(watch=False)
        try:
            await server.run_stdio_async()
        finally:
            await memory.aclose()

    anyio.run(main)
