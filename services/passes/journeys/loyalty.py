"""``loyalty``: after the customer's Nth delivered order (``after_orders``, default 3) the card
invites them to the merchant's loyalty programme (``url``, ``{customer_id}`` filled in), once
ever: the step's key is the journey's own. A customer past N when the merchant switches the
journey on is invited at their next delivery."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.merchants.journeys import DEFAULTS, JourneySettings
from services.passes.journeys.engine import Composed, Journey, schedule
from services.passes.journeys.links import design_of, journey_link
from services.passes.journeys.models import JourneyStep
from services.passes.models import Card

KEY = "invitation"


async def order_delivered(
    session: AsyncSession,
    card: Card,
    delivered: int,
    delivered_at: datetime,
    settings: JourneySettings,
    now: datetime,
) -> None:
    """``delivered``: the customer's delivered orders, this one included."""
    after = settings.after_orders or DEFAULTS["loyalty"].after_orders or 1
    if settings.url is None or delivered < after:
        return
    due = max(delivered_at + timedelta(minutes=settings.delay_minutes), now)
    data = {"orders": delivered}
    await schedule(session, card, "loyalty", KEY, due_at=due, data=data, settings=settings)


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed | str:
    del now
    values = {"customer_id": card.customer_id}
    url = journey_link(await design_of(session, card.merchant_id), "loyalty", settings.url, values)
    if url is None:
        return "no_link"
    return Composed(values={"orders": str(step.data["orders"])}, url=url)


JOURNEY = Journey("loyalty", compose)
