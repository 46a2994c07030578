"""``welcome``: a card issued at sign-up (``customer.registered``) says hello once, when it is
first on a device (an Apple registration, a saved Google object), and never again: the step's
key is the journey's own, so a second registration event or device finds it and does nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.shop_events import CustomerRegistered
from services.merchants.journeys import JourneySettings, journey_settings
from services.passes.journeys.engine import Composed, Journey, release, schedule
from services.passes.journeys.models import JourneyStep
from services.passes.models import Card
from services.passes.registrations import registrations_of

KEY = "welcome"


async def registered(
    session: AsyncSession, card: Card, event: CustomerRegistered, now: datetime
) -> bool:
    """Schedule the welcome: due now if the card is on a device already, else waiting."""
    del event  # what matters is the card, issued or found by the caller
    settings = await journey_settings(session, card.merchant_id, "welcome")
    on_a_device = card.google_saved or bool(await registrations_of(session, card))
    await schedule(
        session,
        card,
        "welcome",
        KEY,
        due_at=now if on_a_device else None,
        data={},
        settings=settings,
    )
    return True


async def on_a_device(session: AsyncSession, card: Card, now: datetime) -> None:
    """The card is on a device now (a new Apple registration, a saved Google object): a
    waiting welcome is due."""
    await release(session, card, "welcome", now)


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed:
    del session, card, step, settings, now
    return Composed()


JOURNEY = Journey("welcome", compose)
