"""``shop.event`` in passes: each type's journey on the customer's card.

Events about an unknown customer make their card where that makes sense (signed up, left a
cart); otherwise they change nothing, and are counted as ``events.no_effect`` (and logged), as
is any event that found nothing to do (a recovered cart never reminded, a trial already over).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import ShopEventReceived
from services.contracts.shop_events import CREATES_CUSTOMER, ShopEventIn
from services.core.clock import clock
from services.core.queue import Handler
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.changes import announce, record_change
from services.passes.channel import count
from services.passes.issuing import find_or_issue, lock_cards, update_customer
from services.passes.journeys import cart, price, trial, welcome
from services.passes.models import Card
from services.passes.schemas import CardIssue

log = logging.getLogger(__name__)

OnCard = Callable[[AsyncSession, Card, Any, datetime], Awaitable[bool]]
"""A type's journey on the customer's card; True when it had an effect."""

ON_CARD: dict[str, OnCard] = {
    "customer.registered": welcome.registered,
    "cart.abandoned": cart.abandoned,
    "cart.recovered": cart.recovered,
    "trial.ending": trial.ending,
}


def shop_event(settings: Settings) -> Handler[ShopEventReceived]:
    async def handle(session: AsyncSession, received: ShopEventReceived) -> None:
        """Run the journey the event triggers."""
        event = received.event
        merchant = await session.get_one(Merchant, received.merchant_id)
        effect = await _apply(session, merchant, event, settings.resolved_secret_key())
        if not effect:
            count(session, merchant.id, "events.no_effect")
            log.info("shop event had no effect", extra={"type": event.type, "event": event.id})

    return handle


async def _apply(
    session: AsyncSession, merchant: Merchant, event: ShopEventIn, secret_key: bytes
) -> bool:
    now = clock.now()
    if event.type == "customer.watch":
        return await price.watch(session, merchant, event)
    if event.type == "customer.unwatch":
        return await price.unwatch(session, merchant, event)
    if event.type == "price.dropped":
        return await price.dropped(session, merchant, event, now)
    card = await _card(session, merchant, event, secret_key)
    if card is None:
        return False
    return await ON_CARD[event.type](session, card, event, now)


async def _card(
    session: AsyncSession, merchant: Merchant, event: ShopEventIn, secret_key: bytes
) -> Card | None:
    """The customer's card, locked, with the event's name, language and zone taken; made now
    for the types that make it (``CREATES_CUSTOMER``), else None without one."""
    customer = event.customer
    created = False
    if event.type in CREATES_CUSTOMER:
        card, created = await find_or_issue(
            session, merchant, customer.id, secret_key, locale=customer.locale
        )
    else:
        locked = await lock_cards(session, [(merchant.id, customer.id)])
        if (found := locked.card_of((merchant.id, customer.id))) is None:
            return None
        card = found
    data = CardIssue(customer_id=customer.id, customer_name=customer.name, locale=customer.locale)
    changed = update_customer(card, merchant, data)
    if customer.time_zone:
        card.time_zone = customer.time_zone
    if created:
        await announce(session, card)  # Google inserts the object right away
    elif changed:
        await record_change(session, card)
    return card
