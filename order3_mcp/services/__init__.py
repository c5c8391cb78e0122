"""Service functions shared by the MCP tools and the CLI."""
