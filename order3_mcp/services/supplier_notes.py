"""Supplier note drafts: a message to a supplier that waits for approval before it reaches the outbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.schemas import DraftDetail
from order3_mcp.services.drafts import (
    _check_rationale,
    _policy_fields,
    approval_owner,
    draft_detail,
)
from order3_mcp.services.exception_links import check_text, load_linkable, quoted
from order3_mcp.services import policy_routing
from policies import DraftFacts
from store import drafts
from store.changes import item_scoped
from store.codes import find_by_code
from store.errors import InvalidInputError, NotFoundError
from store.models import ExceptionRecord, PurchaseOrder, Supplier

# The outbox columns are 250 and 8000 characters long; a subject keeps room for a mail prefix such as "Re: ".
MAX_SUBJECT = 200
MAX_BODY = 8000
MAX_TITLE = 200


async def find_supplier(session: AsyncSession, *, workspace_id: int, code: str) -> Supplier:
    """Return the supplier whose code equals `code`, trimmed and ignoring case.

    Raises:
        NotFoundError: If no supplier has that code.
    """
    supplier = await find_by_code(session, Supplier, Supplier.code, code, Supplier.workspace_id == workspace_id)
    if supplier is None:
        raise NotFoundError(
            f"Supplier {quoted(code)} does not exist in this workspace; list_suppliers shows the codes."
        )
    return supplier


async def find_order(session: AsyncSession, *, workspace_id: int, number: str) -> PurchaseOrder:
    """Return the purchase order whose number equals `number`, trimmed and ignoring case.

    Raises:
        NotFoundError: If no purchase order has that number.
    """
    order = await find_by_code(
        session, PurchaseOrder, PurchaseOrder.number, number, PurchaseOrder.workspace_id == workspace_id
    )
    if order is None:
        raise NotFoundError(
            f"Purchase order {quoted(number)} does not exist in this workspace; list_purchase_orders shows the numbers, "
            "or leave purchase_order empty."
        )
    return order


def _unrelated(supplier: Supplier, order: PurchaseOrder | None) -> Any:
    def check(record: ExceptionRecord) -> str:
        if record.supplier_id != supplier.id:
            return f"is about supplier {record.supplier_code or 'none'}, not {supplier.code}"
        if order is not None and record.purchase_order_id is not None and record.purchase_order_id != order.id:
            return f"is about purchase order {record.purchase_order_number}, not {order.number}"
        return ""

    return check


async def draft_supplier_note(
    app: Order3,
    caller: Caller,
    *,
    supplier: str,
    subject: str,
    body: str,
    purchase_order: str,
    rationale: str,
    title: str,
    exception_ids: list[int],
    idempotency_key: str | None,
    request_id: str = "",
) -> DraftDetail:
    """Prepare a note to a supplier; it is queued in the outbox only after a person approves it.

    The subject, body and title are stored exactly as sent. They are agent
    text, so `order3 drafts show` and `order3 outbox show` print them escaped.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        clean_rationale = _check_rationale(rationale)
        check_text("rationale", rationale, max_length=4000, single_line=False, example="why the note is needed")
        check_text("subject", subject, max_length=MAX_SUBJECT, single_line=True, example='one line, such as "PO-000001: new delivery date?"')
        check_text("body", body, max_length=MAX_BODY, single_line=False, example="the message to the supplier", leaves_order3=True)
        if title:
            check_text("title", title, max_length=MAX_TITLE, single_line=False, example="a short title, or leave it empty")

        chosen = await find_supplier(session, workspace_id=caller.workspace_id, code=supplier)
        if not chosen.active:
            raise InvalidInputError(f"Supplier {chosen.code} is inactive; notes go only to active suppliers.")
        if not chosen.contact_email.strip():
            raise InvalidInputError(
                f"Supplier {chosen.code} has no contact email, so the note could not be delivered; ask a person to "
                "record one (a supplier sync can set contact_email), then draft the note again."
            )
        order: PurchaseOrder | None = None
        if purchase_order.strip():
            order = await find_order(session, workspace_id=caller.workspace_id, number=purchase_order)
            if order.supplier_id != chosen.id:
                owner = await session.get(Supplier, order.supplier_id)
                raise InvalidInputError(
                    f"Purchase order {order.number} is from supplier {owner.code if owner else order.supplier_id}, "
                    f"not {chosen.code}; name one of {chosen.code}'s orders (get_supplier lists the open ones) "
                    "or leave purchase_order empty."
                )
        linked = await load_linkable(session, caller, exception_ids, unrelated=_unrelated(chosen, order))

        route = await policy_routing.route_draft(
            app, session, caller, DraftFacts(kind="supplier_note", value=Decimal(0), supplier_code=chosen.code)
        )
        payload = {
            "supplier_code": chosen.code,
            "supplier_id": chosen.id,
            "recipient": chosen.contact_email,
            "purchase_order_number": order.number if order else "",
            "purchase_order_id": order.id if order else None,
            "subject": subject,
            "body": body,
        }
        generated = f"Note to {chosen.code}: {subject.strip()}"
        affected: list[dict[str, Any]] = [{"kind": "supplier", "id": chosen.id}]
        if order is not None:
            affected.append({"kind": "purchase_order", "id": order.id})
        draft = await drafts.create_draft(
            session,
            workspace_id=caller.workspace_id,
            kind="supplier_note",
            title=title.strip() or (generated if len(generated) <= MAX_TITLE else generated[: MAX_TITLE - 1] + "…"),
            rationale=clean_rationale,
            payload=payload,
            affected=affected,
            created_by_kind=caller.principal_kind,
            created_by=caller.principal,
            created_by_token_id=caller.token_id,
            on_behalf_of=caller.on_behalf_of,
            estimated_value=Decimal(0),
            currency=caller.base_currency,
            idempotency_key=idempotency_key,
            exception_ids=[record.id for record in linked],  # type: ignore[misc]
            **_policy_fields(app, route.rule, caller, policy=route.policy),
        )
        await policy_routing.record_route(session, draft=draft, route=route, now=app.clock())
        about = f" about {order.number}" if order else ""
        summary = f"Drafted supplier note draft {draft.id} to {chosen.code}{about}; {approval_owner(draft)}."
        links = [{"kind": "exception", "id": record.id} for record in linked]
        return Outcome(
            await draft_detail(session, draft), summary, affected=[{"kind": "draft", "id": draft.id}, *links, *affected],
            draft_id=draft.id,
        )

    arguments = {
        "supplier": supplier,
        "subject": subject,
        "body": body,
        "purchase_order": purchase_order,
        "rationale": rationale,
        "title": title,
        "exception_ids": exception_ids,
    }
    return await app.run(
        caller,
        "draft_supplier_note",
        arguments,
        work,
        result_type=DraftDetail,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
