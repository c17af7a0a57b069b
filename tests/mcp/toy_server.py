"""A small MCP server written with the official SDK, for the MCP client tests.

``python toy_server.py`` serves stdio; ``python toy_server.py --http PORT`` serves streamable
HTTP at /mcp. ``crash`` ends the process at once, as a crashing server would.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("toy")
SECRET = "pomegranate-42"


@server.tool()
def secret_word() -> str:
    """The secret word of the day."""
    return f"The secret word is {SECRET} (pid {os.getpid()})."


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def refuse(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"refused: {reason}")


@server.tool()
def crash() -> str:
    """End this server process at once."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        import uvicorn

        app = server.streamable_http_app()
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        server.run()
