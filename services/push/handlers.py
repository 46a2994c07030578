"""What the push service consumes from the queue."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CardUpdated, WalletOrderUpdated
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


def wallet_order_updated(apns: Wakeup) -> Handler[WalletOrderUpdated]:
    async def handle(session: AsyncSession, change: WalletOrderUpdated) -> None:
        """A Wallet order changed: its devices should hear of it, as a card's do (one push per
        version and device, the order type id as topic, retries, dead tokens reported)."""
        await schedule(session, as_apns_change(change), apns)

    return handle


def as_apns_change(change: WalletOrderUpdated) -> CardUpdated:
    """The Wallet order's change in the shape the delivery path keys its targets by: the
    order's id for the card's, its order type id for the topic; no Google object."""
    return CardUpdated(
        card_id=change.wallet_order_id,
        merchant_id=change.merchant_id,
        serial_number=change.order_identifier,
        pass_type_identifier=change.order_type_identifier,
        version=change.version,
        apns=change.apns,
        devices=change.devices,
    )
