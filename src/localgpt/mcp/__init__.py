"""The Model Context Protocol, both ways: ``client`` gives the assistant the tools of the MCP
servers in ``[mcp.servers]``; ``server`` offers the memory to other assistants."""
