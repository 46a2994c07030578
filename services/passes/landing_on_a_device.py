"""What a card's first device starts: the card is in a wallet now, so what waited for that
goes out (a welcome, the offers its campaigns skipped while it was on no device)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.passes.journeys import welcome
from services.passes.marketing.offers import landed_on_a_device
from services.passes.models import Card, Registration


async def card_landed(
    session: AsyncSession, card: Card, now: datetime, devices: list[Registration] | None = None
) -> None:
    """A new Apple registration, or the card's Google object saved; ``card`` is locked."""
    await welcome.on_a_device(session, card, now)
    await landed_on_a_device(session, card, now, devices)
