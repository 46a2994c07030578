"""What the push service consumes from the queue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.queue import Handler, Message
from services.push.deliveries import Wakeup, schedule


def card_updated(wakeup: Wakeup) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        await schedule(session, message.payload, wakeup)

    return handle
