"""What the passes service consumes from the queue."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import OrderChanged, PushTokenRejected
from services.core.queue import Handler, batch_of
from services.core.settings import Settings
from services.core.transaction import Slot
from services.merchants.models import Merchant
from services.passes.card_orders import apply_order_change
from services.passes.issuing import CardsOfBatch, lock_cards
from services.passes.registrations import drop_push_token

log = logging.getLogger(__name__)

_CARDS_OF_BATCH = Slot[CardsOfBatch | None](
    "cards of the batch's customers", lambda: None, forget_at_savepoint_rollback=True
)
"""Locked by the batch's first change. A rolled-back savepoint may have undone a card issued
in it, so the cards are then looked up again."""


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
        cards = await _cards_of_batch(session, change)
        merchant = await session.get_one(Merchant, change.merchant_id)
        await apply_order_change(
            session, merchant, change, settings.resolved_secret_key(), cards=cards
        )

    return handle


async def _cards_of_batch(session: AsyncSession, change: OrderChanged) -> CardsOfBatch:
    """The cards of every customer in the consumer's batch (``change``'s alone outside one),
    found and locked by one query at the batch's first change, then shared by the others."""
    cards = _CARDS_OF_BATCH.get(session)
    if cards is None or not cards.knows(_customer(change)):
        batch = batch_of(session, OrderChanged) or [change]
        cards = await lock_cards(session, {_customer(c) for c in batch})
        _CARDS_OF_BATCH.set(session, cards)
    return cards


def _customer(change: OrderChanged) -> tuple[uuid.UUID, str]:
    return change.merchant_id, change.order.customer.id
