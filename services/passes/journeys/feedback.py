"""``feedback``: the merchant's delay (default 3 days) after an order reaches the customer,
the card asks "How was your order 1001?" with the merchant's survey link (``url``, the order
filled in) and one notification; without one, the link is the card's own rating form
(``/c/{link}/feedback``, no JavaScript), so every shop gets answers. Never for an order
cancelled, returned or refunded by then: that cancels the question not asked yet, and the
card's copy of the order is checked again when it is due; nor for an order the customer has
rated meanwhile (the rating cancels it, ``feedback/card.py:rate``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.cards import card_links
from services.core.db import public_base_url
from services.merchants.journeys import JourneySettings
from services.passes.card_view import Order, order_number
from services.passes.feedback.card import current_score
from services.passes.journeys.engine import Composed, Journey, cancel, schedule
from services.passes.journeys.links import design_of, journey_link
from services.passes.journeys.models import JourneyStep
from services.passes.journeys.timing import due_after
from services.passes.models import Card

UNDONE_STATUSES = frozenset({"cancelled", "returned", "refunded"})


async def order_delivered(
    session: AsyncSession,
    card: Card,
    order: Order,
    delivered_at: datetime,
    settings: JourneySettings,
    now: datetime,
) -> None:
    due = due_after(delivered_at, settings.delay_minutes, settings, now)
    if due is None:
        return
    data = {"order_id": order["id"], "number": order_number(order)}
    await schedule(session, card, "feedback", order["id"], due_at=due, data=data, settings=settings)


async def order_undone(session: AsyncSession, card: Card, order: Order) -> None:
    """Cancelled, returned or refunded: no question about it (one on the card already stays:
    the customer may well want to say why)."""
    await cancel(session, card, "feedback", str(order["status"]), key=order["id"])


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed | str:
    del now
    order: Order = (card.content.get("orders") or {}).get(step.data["order_id"]) or {}
    if order.get("status") in UNDONE_STATUSES:
        return str(order["status"])
    values = {
        "order_id": step.data["order_id"],
        "order_number": order.get("number") or step.data["number"],
        "customer_id": card.customer_id,
    }
    if current_score(card, step.data["order_id"]) is not None:
        return "rated"
    url = journey_link(await design_of(session, card.merchant_id), "feedback", settings.url, values)
    if url is None:
        url = f"{card_links(card, public_base_url(session)).landing_url}/feedback"
    return Composed(values={"number": order_number(order) or step.data["number"]}, url=url)


JOURNEY = Journey("feedback", compose)
