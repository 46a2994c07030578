"""What the passes service consumes from the queue."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import OrderChanged, PushTokenRejected
from services.core.queue import Handler, batch_of
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.cards import apply_order_change, look_up_cards
from services.passes.registrations import drop_push_token

log = logging.getLogger(__name__)


async def push_token_rejected(session: AsyncSession, rejected: PushTokenRejected) -> None:
    """APNs will never accept this token again: forget the device's registration."""
    dropped = await drop_push_token(
        session, rejected.device_library_identifier, rejected.push_token
    )
    log.info(
        "registration dropped after APNs rejected its token",
        extra={"reason": rejected.reason, "registrations": dropped},
    )


def order_changed(settings: Settings) -> Handler[OrderChanged]:
    async def handle(session: AsyncSession, change: OrderChanged) -> None:
        """Show an order's new state on its customer's card."""
        batch = batch_of(session, OrderChanged) or [change]
        await look_up_cards(session, {_customer(c) for c in batch})
        merchant = await session.get_one(Merchant, change.merchant_id)
        await apply_order_change(session, merchant, change, settings.resolved_secret_key())

    return handle


def _customer(change: OrderChanged) -> tuple[uuid.UUID, str]:
    return change.merchant_id, change.order.customer.id
