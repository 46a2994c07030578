"""The card's scheduled marketing work, on the clock: offers past their ``valid_until`` leave
the card, and notifications held for quiet hours go out when they end.

Each round finds due rows through a partial index (``ix_card_offers_shown_valid_until``,
``ix_card_offers_deferred_due_at``: only rows still waiting are in them), locks their cards
with ``SKIP LOCKED`` (a card another replica or a consumer holds is left for the next round),
reads the rows again under that lock and handles at most ``BATCH`` cards in one transaction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.schedule import Job
from services.passes.marketing.models import DEFERRED, SHOWN, CardOffer
from services.passes.marketing.offers import lock_cards_by_id, release_held, take_off
from services.passes.models import Card
from services.passes.registrations import registrations_by_card

BATCH = 100
"""Cards per round and transaction."""


def _expired(now: datetime) -> Sequence[ColumnElement[bool]]:
    return (CardOffer.state == SHOWN, CardOffer.valid_until <= now)


def _held_until_now(now: datetime) -> Sequence[ColumnElement[bool]]:
    return (CardOffer.state == DEFERRED, CardOffer.due_at <= now)


async def _due_cards(
    session: AsyncSession, due: Sequence[ColumnElement[bool]]
) -> tuple[list[Card], dict[uuid.UUID, list[CardOffer]]]:
    """Up to a batch of cards with due rows, locked, and their due rows read under the lock."""
    card_ids = (
        await session.scalars(select(CardOffer.card_id).where(*due).distinct().limit(BATCH))
    ).all()
    cards = await lock_cards_by_id(session, card_ids, skip_locked=True)
    rows: dict[uuid.UUID, list[CardOffer]] = defaultdict(list)
    if cards:
        found = await session.scalars(
            select(CardOffer)
            .where(CardOffer.card_id.in_([c.id for c in cards]), *due)
            .order_by(CardOffer.created_at)
        )
        for row in found.all():
            rows[row.card_id].append(row)
    return [c for c in cards if rows.get(c.id)], rows


async def expire_offers(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Take offers whose ``valid_until`` passed off their cards, quietly."""
    async with sessionmaker() as session, session.begin():
        cards, rows = await _due_cards(session, _expired(now))
        devices = await registrations_by_card(session, cards)
        for card in cards:
            await take_off(session, card, rows[card.id], "expired", "expired", devices[card.id])
        return len(cards)


async def send_held(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Show the offers held for quiet hours that ended (the policy asked again)."""
    async with sessionmaker() as session, session.begin():
        cards, rows = await _due_cards(session, _held_until_now(now))
        await release_held(session, cards, rows, now)
        return len(cards)


JOBS = (
    Job("marketing-expiry", every=30.0, run=expire_offers),
    Job("marketing-held-sends", every=30.0, run=send_held),
)
