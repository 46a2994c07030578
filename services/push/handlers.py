"""What the push service consumes from the queue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CardUpdated
from services.core.queue import Handler
from services.push import google
from services.push.deliveries import schedule
from services.push.workers import Wakeup


def card_updated(apns: Wakeup, google_wakeup: Wakeup) -> Handler[CardUpdated]:
    async def handle(session: AsyncSession, change: CardUpdated) -> None:
        """A card changed: its devices should hear of it, and its Google object show it."""
        await schedule(session, change, apns)
        await google.schedule(session, change, google_wakeup)

    return handle
