"""A scripted agent for the demo: it drives `order3 serve` through a real MCP client over stdio.

It replaces an LLM and makes the calls an agent would make: list the tools,
read context, run the finders, draft a purchase order whose rationale cites the
exception's numbers, and try to approve its own draft, which the server rejects.
Then it drafts one transfer, count task, supplier note, adjustment and
reconciliation (`order3_mcp.agent_kinds`) in the same session.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from rich.console import Console
from rich.text import Text

from store.errors import Order3Error

if TYPE_CHECKING:
    from order3_mcp.agent_kinds import KindDrafts

# Tools only people may call; the demo checks that the agent's listing leaves them out.
PEOPLE_ONLY_TOOLS = ("approve_draft", "reject_draft", "execute_draft", "dismiss_exception")
# Seconds to wait for one MCP response before the demo gives up.
CALL_TIMEOUT_SECONDS = 30.0


class AgentScriptError(Order3Error):
    """A step of the scripted agent did not get the result the demo depends on."""


@dataclass(frozen=True)
class AgentRun:
    """Record of the scripted agent's run: the tools it saw, the drafts it made and the rejection it got."""

    tools: tuple[str, ...]
    exception_id: int
    draft_id: int
    payload_hash: str
    refusal: str
    kinds: KindDrafts


def error_text(result: Any) -> str:
    """Return the text of a tool result's content blocks."""
    return " ".join(getattr(block, "text", "") for block in result.content).strip()


async def call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool and return its structured result.

    Raises:
        AgentScriptError: If the tool returns an error or no structured result.
    """
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise AgentScriptError(f"The agent's call to {name} failed: {error_text(result)}")
    if not isinstance(result.structured_content, dict):
        raise AgentScriptError(f"The agent's call to {name} returned no structured result.")
    return result.structured_content


def pick_low_stock(exceptions: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the first open low-stock exception that names a supplier and a quantity to order.

    Raises:
        AgentScriptError: If there is none.
    """
    for found in exceptions:
        evidence = found.get("evidence") or {}
        suggested = str(evidence.get("suggested_quantity") or "0")
        if found.get("status") == "open" and found.get("supplier") and suggested not in ("0", ""):
            return found
    raise AgentScriptError(
        "find_low_stock returned no open exception with a supplier and a suggested quantity; "
        "check that the demo reorder settings were applied."
    )


async def run_agent(*, db_location: str, token: str, console: Console) -> AgentRun:
    """Run the scripted agent against a fresh `order3 serve` subprocess.

    Raises:
        AgentScriptError: If a step the demo depends on fails.
    """

    def agent_says(message: str) -> None:
        line = Text("buyer-bot → ", style="bold cyan")
        line.append(message)
        console.print(line, soft_wrap=True)

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "order3_mcp.cli", "serve"],
        env={"ORDER3_DB": db_location, "ORDER3_TOKEN": token},
    )
    async with Client(server, read_timeout_seconds=CALL_TIMEOUT_SECONDS) as client:
        listing = await client.list_tools()
        tools = tuple(sorted(tool.name for tool in listing.tools))
        hidden = [name for name in PEOPLE_ONLY_TOOLS if name not in tools]
        agent_says(f"list_tools: {len(tools)} tools; {', '.join(hidden)} are not listed for this agent token.")

        low = await call(client, "find_low_stock", {"limit": 20})
        found = pick_low_stock(low["exceptions"])
        evidence = found["evidence"]
        agent_says(f"find_low_stock: {len(low['exceptions'])} exceptions; exception {found['exception_id']}: {found['reason']}")

        item = await call(client, "get_item", {"sku": found["sku"]})
        agent_says(
            f"get_item {item['sku']} ({item['name']}): on hand {item['on_hand']} {item['unit']}, "
            f"available {item['available']}, on order {item['on_order']}."
        )
        orders = await call(client, "list_purchase_orders", {"supplier": found["supplier"]})
        numbers = ", ".join(f"{po['number']} ({po['status']})" for po in orders["purchase_orders"]) or "none"
        agent_says(f"list_purchase_orders for {found['supplier']}: {numbers}.")

        found_by: dict[str, list[dict[str, Any]]] = {}
        for finder in ("find_supplier_delays", "find_short_receiving"):
            page = await call(client, finder, {"limit": 20})
            found_by[finder] = page["exceptions"]
            first = f" First: {page['exceptions'][0]['reason']}" if page["exceptions"] else ""
            agent_says(f"{finder}: {len(page['exceptions'])} exceptions.{first}")

        quantity = evidence["suggested_quantity"]
        rationale = (
            f"Answers low-stock exception {found['exception_id']}: {found['reason']} "
            f"Stock position {evidence.get('stock_position')} against reorder point {evidence.get('reorder_point')}; "
            f"ordering {quantity} brings it to the target level of {evidence.get('target_level')} "
            f"({evidence.get('target_source')}). {found['supplier']} has {len(orders['purchase_orders'])} purchase orders on file."
        )
        draft = await call(
            client,
            "draft_purchase_order",
            {
                "lines": [{"sku": found["sku"], "quantity": quantity}],
                "supplier": found["supplier"],
                "rationale": rationale,
                "exception_ids": [found["exception_id"]],
                "idempotency_key": f"demo-low-stock-{found['exception_id']}",
            },
        )
        agent_says(
            f"draft_purchase_order: draft {draft['draft_id']} for {quantity} × {found['sku']} from {found['supplier']}, "
            f"{draft['estimated_value']} {draft['currency']}, status {draft['status']}; {draft['approval_owner']}"
        )

        try:
            attempt = await client.call_tool("approve_draft", {"draft_id": draft["draft_id"]})
        except MCPError as exc:
            refusal = str(exc)
        else:
            if not attempt.is_error:
                raise AgentScriptError(f"The agent token approved draft {draft['draft_id']}; agent tokens must never approve.")
            refusal = error_text(attempt)
        agent_says(f"approve_draft {draft['draft_id']}: refused: {refusal}")

        # Imported here because agent_kinds imports `call` and AgentScriptError from this module.
        from order3_mcp import agent_kinds

        kinds = agent_kinds.KindDrafts(
            transfer=await agent_kinds.draft_transfer(client, agent_says),
            count_task=await agent_kinds.draft_count_task(
                client, agent_says, fallback_sku=found["sku"], incoming=f"the {quantity} in purchase order draft {draft['draft_id']}"
            ),
            supplier_note=await agent_kinds.draft_supplier_note(client, agent_says, delays=found_by["find_supplier_delays"]),
            adjustment=await agent_kinds.draft_adjustment(client, agent_says),
            reconciliation=await agent_kinds.draft_reconciliation(client, agent_says),
        )

    return AgentRun(
        tools=tools,
        exception_id=found["exception_id"],
        draft_id=draft["draft_id"],
        payload_hash=draft["payload_hash"],
        refusal=refusal,
        kinds=kinds,
    )

