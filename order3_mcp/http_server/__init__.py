"""Streamable HTTP transport: per-request bearer authentication in front of one MCP server per token."""
