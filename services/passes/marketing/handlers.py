"""What the card's marketing consumes: campaign audiences, withdrawn offers, consent set by
the shop, and the customer saving or removing the card's Google object."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import (
    CampaignAudience,
    GoogleWalletChanged,
    MarketingConsentSet,
    OfferWithdrawn,
)
from services.core.clock import clock
from services.core.queue import publish
from services.passes.issuing import lock_cards
from services.passes.landing_on_a_device import card_landed
from services.passes.marketing.consent import set_consent
from services.passes.marketing.models import CardOffer
from services.passes.marketing.offers import (
    PAGE,
    apply_audience,
    due_rows,
    lock_cards_by_id,
    take_off,
    withdrawable,
)
from services.passes.models import Card
from services.passes.registrations import registrations_by_card


async def campaign_audience(session: AsyncSession, audience: CampaignAudience) -> None:
    """A part of a campaign's audience: the offer on their cards, as the policy decides."""
    await apply_audience(session, audience, clock.now())


async def offer_withdrawn(session: AsyncSession, withdrawn: OfferWithdrawn) -> None:
    """Redeemed (one customer's card) or cancelled (every card, a page at a time): the offer
    leaves the card quietly, and a held notification of it is dropped."""
    merchant_id = withdrawn.merchant_id
    if withdrawn.customer_id is not None:
        locked = await lock_cards(session, [(merchant_id, withdrawn.customer_id)])
        card = locked.card_of((merchant_id, withdrawn.customer_id))
        cards = [card] if card is not None else []
    else:
        page = await _cards_with_offer_after(
            session, merchant_id, withdrawn.offer_id, withdrawn.after
        )
        if len(page) == PAGE:
            rest = withdrawn.model_copy(update={"after": str(page[-1])})
            publish(session, rest, key=withdrawn.offer_id)
        cards = await lock_cards_by_id(session, page)
    rows = await due_rows(session, cards, withdrawn.offer_id)
    devices = await registrations_by_card(session, cards)
    for card in cards:
        found = rows.get(card.id, [])
        await take_off(session, card, found, "withdrawn", withdrawn.reason, devices[card.id])


async def _cards_with_offer_after(
    session: AsyncSession, merchant_id: uuid.UUID, offer_id: str, after: str | None
) -> list[uuid.UUID]:
    query = select(CardOffer.card_id).where(
        CardOffer.merchant_id == merchant_id,
        CardOffer.offer_id == offer_id,
        withdrawable(),
    )
    if after is not None:
        query = query.where(CardOffer.card_id > uuid.UUID(after))
    return list((await session.scalars(query.order_by(CardOffer.card_id).limit(PAGE))).all())


async def marketing_consent(session: AsyncSession, consent: MarketingConsentSet) -> None:
    """The shop's consent record (the latest ``at`` wins over the customer's own choice)."""
    await set_consent(
        session, consent.merchant_id, consent.customer_id, consent.consent, consent.at, "shop"
    )


async def google_wallet_changed(session: AsyncSession, changed: GoogleWalletChanged) -> None:
    """The card is on a device while its Google object is saved (the latest callback wins)."""
    card = await session.scalar(select(Card).where(Card.id == changed.card_id).with_for_update())
    if card is None:
        return
    if card.google_changed_at is not None and card.google_changed_at > changed.at:
        return
    landed = changed.saved and not card.google_saved
    card.google_saved, card.google_changed_at = changed.saved, changed.at
    if landed:
        await card_landed(session, card, clock.now())
