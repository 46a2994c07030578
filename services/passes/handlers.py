"""What the passes service consumes from the queue."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import OrderChanged, PushTokenRejected
from services.core.queue import Handler, batch_of
from services.core.settings import Settings
from services.core.transaction import Slot
from services.merchants import wallet_orders as merchant_wallet_orders
from services.merchants.models import Merchant
from services.passes.card_orders import apply_order_change
from services.passes.issuing import CardsOfBatch, lock_cards
from services.passes.journeys import cart
from services.passes.journeys.engine import read_open_journeys
from services.passes.registrations import drop_push_token
from services.passes.wallet_orders.tracking import (
    WalletOrdersOfBatch,
    drop_order_push_token,
    lock_wallet_orders,
    track_order_change,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Batch:
    """What a consumer's batch of order changes reads once for all of them."""

    merchants: dict[uuid.UUID, Merchant]
    cards: CardsOfBatch
    wallet_orders: WalletOrdersOfBatch


_BATCH = Slot[_Batch | None](
    "cards and Wallet orders of the batch's changes",
    lambda: None,
    forget_at_savepoint_rollback=True,
)
"""Locked by the batch's first change. A rolled-back savepoint may have undone a card or a
Wallet order made in it, so they are then looked up again."""


async def push_token_rejected(session: AsyncSession, rejected: PushTokenRejected) -> None:
    """APNs will never accept this token again: forget the device's registration."""
    dropped = await drop_push_token(
        session, rejected.device_library_identifier, rejected.push_token
    ) + await drop_order_push_token(
        session, rejected.device_library_identifier, rejected.push_token
    )
    log.info(
        "registration dropped after APNs rejected its token",
        extra={"reason": rejected.reason, "registrations": dropped},
    )


def order_changed(settings: Settings) -> Handler[OrderChanged]:
    async def handle(session: AsyncSession, change: OrderChanged) -> None:
        """Show an order's new state on its customer's card and in its Wallet order; a cart
        reminder not sent yet is not sent (any order event of the customer cancels it)."""
        batch = await _batch(session, change)
        merchant = batch.merchants[change.merchant_id]
        secret_key = settings.resolved_secret_key()
        card = await apply_order_change(session, merchant, change, secret_key, cards=batch.cards)
        await track_order_change(
            session, merchant, card, change, secret_key, known=batch.wallet_orders
        )
        await cart.ordered(session, card)

    return handle


async def _batch(session: AsyncSession, change: OrderChanged) -> _Batch:
    """What every change in the consumer's batch (``change`` alone outside one) needs, read
    at the batch's first change and shared by the others: the merchants, the customers'
    cards (locked) and their registrations, which journeys have steps open on them, and the
    orders' Wallet orders and their devices (of merchants that have them). A query per change
    would also flush the session each time, and write each card twice."""
    batch = _BATCH.get(session)
    if batch is None or not batch.cards.knows(_customer(change)):
        changes = batch_of(session, OrderChanged) or [change]
        cards = await lock_cards(session, {_customer(c) for c in changes}, with_devices=True)
        await read_open_journeys(session, cards.found())
        merchants = {
            m: await session.get_one(Merchant, m) for m in {c.merchant_id for c in changes}
        }
        orders = await lock_wallet_orders(
            session,
            {
                (c.merchant_id, c.order.id)
                for c in changes
                if merchant_wallet_orders.enabled(merchants[c.merchant_id])
            },
        )
        batch = _Batch(merchants, cards, orders)
        _BATCH.set(session, batch)
    return batch


def _customer(change: OrderChanged) -> tuple[uuid.UUID, str]:
    return change.merchant_id, change.order.customer.id
