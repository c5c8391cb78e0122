"""A server that does no work: the MCP SDK's own cost of a tool call, for comparison with Order3's.

`python -m benchmarks.sdk_floor RESULT.json` serves one tool, `get_item`, that
returns the stored `ItemDetail` without touching a database: the same output
schema, the same payload, the same validation on both sides as a real call.
Its latency minus ping is what the SDK and the client's output validation
cost; the rest of a real `get_item` is Order3's own work.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server import MCPServer

from order3_mcp.schemas import ItemDetail


def build(result: ItemDetail) -> MCPServer:
    """Return a server whose `get_item` tool returns `result` whatever it is asked."""
    server = MCPServer("order3-sdk-floor")

    @server.tool()
    async def get_item(sku: str) -> ItemDetail:
        """Return a fixed item."""
        return result

    return server


def main() -> None:
    """Serve over stdio the result stored in the file named by the first argument."""
    result = ItemDetail.model_validate_json(Path(sys.argv[1]).read_text())
    build(result).run("stdio")


if __name__ == "__main__":
    main()
