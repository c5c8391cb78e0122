"""Order3 MCP: the MCP server, its tools, the service layer and the `order3` CLI."""
