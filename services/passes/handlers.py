"""What the passes service consumes from the queue."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.queue import Message
from services.passes.registrations import drop_push_token

log = logging.getLogger(__name__)


async def push_token_rejected(session: AsyncSession, message: Message) -> None:
    """APNs will never accept this token again: forget the device's registration."""
    dropped = await drop_push_token(
        session, message.payload["device_library_identifier"], message.payload["push_token"]
    )
    log.info(
        "registration dropped after APNs rejected its token",
        extra={"reason": message.payload.get("reason"), "registrations": dropped},
    )
