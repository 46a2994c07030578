"""What the passes service consumes from the queue."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.topics import ORDER_CHANGED
from services.core.queue import Handler, Message, batch_of
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.cards import apply_order_change, look_up_cards
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


def order_changed(settings: Settings) -> Handler:
    async def handle(session: AsyncSession, message: Message) -> None:
        """Show an order's new state on its customer's card."""
        batch = [m for m in batch_of(session) if m.topic == ORDER_CHANGED] or [message]
        await look_up_cards(session, {_customer(m) for m in batch})
        merchant = await session.get_one(Merchant, uuid.UUID(message.payload["merchant_id"]))
        await apply_order_change(session, merchant, message.payload, settings.resolved_secret_key())

    return handle


def _customer(message: Message) -> tuple[uuid.UUID, str]:
    return uuid.UUID(message.payload["merchant_id"]), message.payload["order"]["customer"]["id"]
