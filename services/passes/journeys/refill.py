"""``refill``: a product with a follow-up (its item's ``refill_after_days`` in the order, or
the merchant's ``products`` setting of the journey) gets a reminder that many days after its
order reached the customer. A later order with the product cancels it (and takes one shown
off the card): the customer bought it again. A product is its ``product_id``, else its name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.merchants.journeys import MINUTES_A_DAY, JourneySettings
from services.passes.card_view import Order
from services.passes.journeys.engine import Composed, Journey, cancel, may_have_steps, schedule
from services.passes.journeys.links import design_of, journey_link
from services.passes.journeys.models import OPEN_STATES, SHOWN, JourneyStep
from services.passes.journeys.texts import title_sized
from services.passes.journeys.timing import due_after
from services.passes.models import Card


def products(order: Order) -> dict[str, dict[str, Any]]:
    """The order's items by product."""
    return {str(item.get("product_id") or item["name"]): item for item in order.get("items") or []}


async def order_delivered(
    session: AsyncSession,
    card: Card,
    order: Order,
    delivered_at: datetime,
    settings: JourneySettings,
    now: datetime,
) -> None:
    """A reminder per product of the order that has a follow-up (one per product and order)."""
    for product, item in products(order).items():
        days = item.get("refill_after_days") or settings.products.get(product)
        if not days:
            continue
        delay = days * MINUTES_A_DAY + settings.delay_minutes
        due = due_after(delivered_at, delay, settings, now)
        if due is None:
            continue
        data = {
            "product": product,
            "product_id": item.get("product_id"),
            "name": item["name"],
            "order_id": order["id"],
            "placed_at": order["placed_at"],
        }
        key = f"{product} {order['id']}"
        await schedule(session, card, "refill", key, due_at=due, data=data, settings=settings)


async def ordered(session: AsyncSession, card: Card, order: Order) -> None:
    """An order the card had not seen: the reminders of its products from earlier orders
    are not needed any more."""
    bought = set(products(order))
    if not bought or not may_have_steps(session, card, "refill"):
        return
    steps = await session.scalars(
        select(JourneyStep).where(
            JourneyStep.card_id == card.id,
            JourneyStep.journey == "refill",
            JourneyStep.state.in_((*OPEN_STATES, SHOWN)),
        )
    )
    for step in steps.all():
        if step.data["product"] in bought and _later(order, step):
            await cancel(session, card, "refill", "bought_again", key=step.key, shown_too=True)


def _later(order: Order, step: JourneyStep) -> bool:
    placed = datetime.fromisoformat(order["placed_at"])
    return placed > datetime.fromisoformat(step.data["placed_at"])


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed | str:
    del now
    orders = (card.content.get("orders") or {}).values()
    if any(step.data["product"] in products(o) and _later(o, step) for o in orders):
        return "bought_again"
    order = (card.content.get("orders") or {}).get(step.data["order_id"]) or {}
    values = {
        "product_id": step.data["product_id"],
        "order_id": step.data["order_id"],
        "order_number": order.get("number"),
        "customer_id": card.customer_id,
    }
    design = await design_of(session, card.merchant_id)
    url = journey_link(design, "refill", settings.url, values)
    own = (order.get("links") or {}).get("order")
    return Composed(values={"product": title_sized(step.data["name"])}, url=url or own)


JOURNEY = Journey("refill", compose)
