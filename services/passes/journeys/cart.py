"""``cart_abandoned``: a reminder with the cart's link the merchant's delay (default 1 hour)
after ``cart.abandoned``, unless the customer ordered meanwhile or was reminded of a cart in
the last 7 days; ``cart.recovered`` cancels it (and takes a shown one off), and so does any
order event of the customer (``order.changed`` in passes, before it is sent)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.shop_events import CartAbandonedEvent, CartRecoveredEvent
from services.merchants.journeys import JourneySettings, journey_settings
from services.passes.journeys.engine import Composed, Journey, cancel, schedule
from services.passes.journeys.models import JourneyStep
from services.passes.models import Card

REMINDED_WITHIN = timedelta(days=7)
"""A cart reminder shown less than this ago: no other one."""


async def abandoned(
    session: AsyncSession, card: Card, event: CartAbandonedEvent, now: datetime
) -> bool:
    settings = await journey_settings(session, card.merchant_id, "cart_abandoned")
    abandoned_at = event.occurred_at
    due = max(abandoned_at + timedelta(minutes=settings.delay_minutes), now)
    data = {
        "cart_id": event.data.cart_id,
        "url": str(event.data.url),
        "abandoned_at": abandoned_at.isoformat(),
    }
    key = event.data.cart_id
    return await schedule(
        session, card, "cart_abandoned", key, due_at=due, data=data, settings=settings
    )


async def recovered(
    session: AsyncSession, card: Card, event: CartRecoveredEvent, now: datetime
) -> bool:
    del now
    key = event.data.cart_id
    ended = await cancel(session, card, "cart_abandoned", "recovered", key=key, shown_too=True)
    return ended > 0


async def ordered(session: AsyncSession, card: Card) -> None:
    """Any order event of the customer: a reminder not sent yet is not sent."""
    await cancel(session, card, "cart_abandoned", "ordered")


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed | str:
    del settings
    abandoned_at = datetime.fromisoformat(step.data["abandoned_at"])
    orders = (card.content.get("orders") or {}).values()
    if any(datetime.fromisoformat(o["placed_at"]) > abandoned_at for o in orders):
        return "ordered"
    reminded = await session.scalar(
        select(JourneyStep.id)
        .where(
            JourneyStep.card_id == card.id,
            JourneyStep.journey == "cart_abandoned",
            JourneyStep.id != step.id,
            JourneyStep.shown_at > now - REMINDED_WITHIN,
        )
        .limit(1)
    )
    if reminded is not None:
        return "reminded_recently"
    return Composed(url=step.data["url"])


JOURNEY = Journey("cart_abandoned", compose)
