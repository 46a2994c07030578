"""The merchant's stores, set ("in the right place"; at most 10, ``schemas.MAX_LOCATIONS``):
what the cards show of them is ``card_view.store_locations``. A change of the stores gives
every card of the merchant a new version, silently: ``cards.refreshed`` pages through them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CardsRefreshed
from services.core.queue import publish
from services.passes.changes import record_change
from services.passes.marketing.offers import PAGE, page_of_cards
from services.passes.models import PassDesign
from services.passes.registrations import registrations_by_card
from services.passes.schemas import StoreLocation


async def set_locations(
    session: AsyncSession, design: PassDesign, locations: list[StoreLocation]
) -> PassDesign:
    """The merchant's stores (at most 10, checked by ``StoreLocations``); when they changed,
    every card of the merchant gets a new version carrying them, silently."""
    wanted = [location.model_dump() for location in locations]
    if wanted != (design.locations or []):
        design.locations = wanted
        refresh = CardsRefreshed(merchant_id=design.merchant_id, reason="locations")
        publish(session, refresh, key=str(design.merchant_id))
    await session.flush()
    return design


async def cards_refreshed(session: AsyncSession, refresh: CardsRefreshed) -> None:
    """A page of the merchant's cards, each a new version without a notification; the rest
    in the next message."""
    cards = await page_of_cards(session, refresh.merchant_id, refresh.after)
    if len(cards) == PAGE:
        rest = refresh.model_copy(update={"after": cards[-1].customer_id})
        publish(session, rest, key=str(refresh.merchant_id))
    devices = await registrations_by_card(session, cards)
    for card in cards:
        await record_change(session, card, devices=devices[card.id])
