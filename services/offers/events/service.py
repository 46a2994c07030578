"""Shop events: each id once per merchant, stored and handed to passes in one transaction.

Like order events: a replayed id answers as before, another body under it is a 409, and a
refused event leaves no trace. What an event does to a card is passes' business
(``passes/journeys``): here it is only accepted, recorded and published as ``shop.event``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import ShopEventReceived
from services.contracts.shop_api import Answer, answers, body_hash, replay
from services.contracts.shop_events import CREATES_CUSTOMER, ShopEventIn
from services.core.db import dialect_insert
from services.core.errors import PasspostError
from services.core.models import utcnow
from services.core.queue import publish
from services.core.settings import Settings
from services.merchants.api import links_for
from services.merchants.models import Merchant
from services.offers.events.models import ShopEvent
from services.offers.events.schemas import ShopEventAccepted


async def ingest_events(
    session: AsyncSession, merchant: Merchant, events: Sequence[ShopEventIn], settings: Settings
) -> list[ShopEventAccepted | PasspostError]:
    """Accept events in their order, each id once: one query for the ids seen before, then
    per new event its row (``ON CONFLICT DO NOTHING``: an id stored meanwhile by another
    request is answered as that one was) and its ``shop.event``."""
    answered = await _answers(session, merchant, {event.id for event in events})
    outcomes: list[ShopEventAccepted | PasspostError] = []
    for event in events:
        digest = body_hash(event)
        seen = answered.get(event.id)
        if seen is None:
            accepted = _accepted(merchant, event, settings)
            answer = Answer(event.id, digest, accepted.model_dump(mode="json"))
            if await _store(session, merchant, event, answer):
                answered[event.id] = answer
                outcomes.append(accepted)
                continue
            seen = (await _answers(session, merchant, {event.id}))[event.id]
        outcomes.append(replay(seen, digest, ShopEventAccepted))
    return outcomes


def _accepted(merchant: Merchant, event: ShopEventIn, settings: Settings) -> ShopEventAccepted:
    """The answer: with the card's links when the event makes the customer's card."""
    links = links_for(merchant, event.customer.id, settings)
    return ShopEventAccepted(
        event_id=event.id,
        type=event.type,
        duplicate=False,
        card=links if event.type in CREATES_CUSTOMER else None,
    )


async def _store(
    session: AsyncSession, merchant: Merchant, event: ShopEventIn, answer: Answer
) -> bool:
    """Store a new event and publish it; False when its id was stored meanwhile."""
    now = utcnow()
    insert = (
        dialect_insert(session)(ShopEvent)
        .values(
            id=uuid.uuid4(),
            merchant_id=merchant.id,
            event_id=event.id,
            type=event.type,
            customer_id=event.customer.id,
            occurred_at=event.occurred_at,
            received_at=now,
            body_hash=answer.body_hash,
            response=answer.response,
        )
        .on_conflict_do_nothing(index_elements=[ShopEvent.merchant_id, ShopEvent.event_id])
        .returning(ShopEvent.id)
    )
    if await session.scalar(insert) is None:
        return False
    message = ShopEventReceived(merchant_id=merchant.id, event=event, received_at=now)
    publish(session, message, key=f"{merchant.id}:{event.customer.id}")
    return True


async def _answers(
    session: AsyncSession, merchant: Merchant, event_ids: set[str]
) -> dict[str, Answer]:
    return await answers(session, ShopEvent, merchant.id, event_ids)
