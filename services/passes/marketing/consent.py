"""A customer's consent to marketing on the card: the shop's records and the customer's own
choice on the card's page, the latest ``at`` winning. Saying no takes the offers off the card
at once (quietly); order updates are never touched."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.passes.issuing import lock_cards
from services.passes.marketing.models import MarketingConsent
from services.passes.marketing.offers import due_rows, take_off

Source = Literal["shop", "customer"]


async def set_consent(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    customer_id: str,
    consent: bool,
    at: datetime,
    source: Source,
) -> bool:
    """Record the consent unless a later record exists; True when it now holds."""
    locked = await lock_cards(session, [(merchant_id, customer_id)])
    card = locked.card_of((merchant_id, customer_id))
    record = await session.scalar(
        select(MarketingConsent)
        .where(
            MarketingConsent.merchant_id == merchant_id,
            MarketingConsent.customer_id == customer_id,
        )
        .with_for_update()
    )
    if record is not None and record.at > at:
        return False
    if record is None:
        record = MarketingConsent(merchant_id=merchant_id, customer_id=customer_id)
        session.add(record)
    record.consent, record.at, record.source = consent, at, source
    if not consent and card is not None:
        rows = (await due_rows(session, [card])).get(card.id, [])
        await take_off(session, card, rows, "withdrawn", "opted_out")
    await session.flush()
    return True


async def consent_of(session: AsyncSession, merchant_id: uuid.UUID, customer_id: str) -> bool:
    consent = await session.scalar(
        select(MarketingConsent.consent).where(
            MarketingConsent.merchant_id == merchant_id,
            MarketingConsent.customer_id == customer_id,
        )
    )
    return consent is not False
