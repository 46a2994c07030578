"""The journeys an order's change starts and ends on its customer's card (``order.changed``,
applied by ``card_orders.apply_order_change`` with the card locked): delivered, it schedules
the feedback request, the refill reminders of its products and, at the Nth delivered order,
the loyalty invitation; a new order cancels the reminders of the products it buys again;
cancelled, returned or refunded, it cancels its feedback request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from services.merchants.journeys import journeys_of
from services.merchants.models import Merchant
from services.passes.journeys import feedback, loyalty, refill
from services.passes.models import Card

if TYPE_CHECKING:
    from services.passes.card_orders import OrdersTaken


async def order_changed(
    session: AsyncSession,
    merchant: Merchant,
    card: Card,
    taken: OrdersTaken,
    occurred_at: datetime,
    now: datetime,
) -> None:
    """``occurred_at``: when the change happened at the shop (the delivery's time; one without
    a zone is UTC, as the orders service stores every time)."""
    if taken.first_seen:
        await refill.ordered(session, card, taken.order)
    if taken.undone:
        await feedback.order_undone(session, card, taken.order)
    if taken.delivered:
        journeys = journeys_of(merchant)
        order, at = taken.order, occurred_at.replace(tzinfo=occurred_at.tzinfo or UTC)
        await feedback.order_delivered(session, card, order, at, journeys["feedback"], now)
        await refill.order_delivered(session, card, order, at, journeys["refill"], now)
        delivered = taken.delivered_count
        await loyalty.order_delivered(session, card, delivered, at, journeys["loyalty"], now)
