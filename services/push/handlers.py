"""What the push service consumes from the queue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.queue import Handler, Message
from services.push import google
from services.push.deliveries import schedule
from services.push.workers import Wakeup


def card_updated(apns: Wakeup, google_wakeup: Wakeup) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        """A card changed: its devices should hear of it, and its Google object show it."""
        await schedule(session, message.payload, apns)
        await google.schedule(session, message.payload, google_wakeup)

    return handle
