"""The `order3` command groups; `order3_mcp.cli` assembles them into one typer app."""
