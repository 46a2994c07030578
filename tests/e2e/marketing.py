"""Helpers of the marketing end-to-end tests: cards on phones, campaigns as the offers service
sends them, and the pass as the phone fetches it."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.contracts.messages import CampaignAudience, CardCriteria, Contract, OfferView
from services.core.clock import clock
from services.core.queue import OutboxMessage, publish
from services.onboarding import Onboarded
from services.passes.marketing.models import CardOffer
from services.passes.models import Card
from tests.factories import (
    WS,
    create_card,
    order_event,
    pass_auth,
    post_order_event,
    push_token,
    register_device,
)
from tests.waiting import eventually, nothing_to_push

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
"""Tuesday noon in UTC (13:00 in Prague, 21:00 in Tokyo)."""


@pytest.fixture
def at_noon() -> Iterator[datetime]:
    clock.set(NOON)
    yield NOON
    clock.reset()


def offer(offer_id: str = "tea-10", **fields: Any) -> OfferView:
    """An offer as the offers service describes it, valid for a week from now."""
    values: dict[str, Any] = {
        "id": offer_id,
        "title": "10 % off tea",
        "text": "Every tea, until Sunday.",
        "coupon_code": "TEA10",
        "url": "https://shop.example.com/tea",
        "valid_until": clock.now() + timedelta(days=7),
        "created_at": clock.now(),
        **fields,
    }
    return OfferView.model_validate(values)


async def send(sessionmaker: async_sessionmaker[AsyncSession], *messages: Contract) -> None:
    """Publish as the offers service would, in one committed transaction."""
    async with sessionmaker() as session:
        for message in messages:
            publish(session, message)
        await session.commit()


def audience(
    shop: Onboarded,
    view: OfferView,
    customers: list[str] | None,
    *,
    campaign_id: uuid.UUID,
    part: int = 1,
    parts: int | None = 1,
    cards: CardCriteria | None = None,
) -> CampaignAudience:
    return CampaignAudience(
        campaign_id=campaign_id,
        merchant_id=shop.merchant.id,
        offer=view,
        customer_ids=customers,
        part=part,
        parts=parts,
        cards=cards or CardCriteria(),
    )


async def card_on_phone(
    client: httpx.AsyncClient, session: AsyncSession, shop: Onboarded, customer_id: str
) -> tuple[Card, str]:
    """A card registered on one phone; its push token."""
    card = await create_card(session, shop, customer_id=customer_id)
    token = push_token()
    await register_device(client, card, f"phone-{customer_id}", token)
    return card, token


async def settled(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await eventually(lambda: nothing_to_push(sessionmaker))


async def pass_json(client: httpx.AsyncClient, card: Card) -> dict[str, Any]:
    """pass.json as the phone fetches it now."""
    response = await client.get(
        f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}", headers=pass_auth(card)
    )
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        document: dict[str, Any] = json.loads(bundle.read("pass.json"))
    return document


def fields(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every field of the pass by key, front and back."""
    return {f["key"]: f for group in document["storeCard"].values() for f in group}


def notifying_changes(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The fields whose value changed and that carry a ``changeMessage`` now: Wallet shows a
    lock-screen line only for these (one line when there is exactly one)."""
    old, new = fields(before), fields(after)
    return {
        key
        for key, field in new.items()
        if "changeMessage" in field and old.get(key, {}).get("value") != field["value"]
    }


async def announced(
    sessionmaker: async_sessionmaker[AsyncSession], card: Card
) -> list[dict[str, Any]]:
    """The ``card.updated`` payloads of a card, oldest first."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.topic == "card.updated", OutboxMessage.key == str(card.id))
            .order_by(OutboxMessage.id)
        )
        return list(rows.all())


async def reloaded(sessionmaker: async_sessionmaker[AsyncSession], card: Card) -> Card:
    async with sessionmaker() as session:
        found = await session.get_one(Card, card.id)
        session.expunge(found)
        return found


async def card_registered(client: httpx.AsyncClient, card: Card) -> str:
    """Register a phone for ``card``; its push token."""
    token = push_token()
    await register_device(client, card, f"phone-{card.customer_id}", token)
    return token


async def set_zones(session: AsyncSession, zones: dict[str, str]) -> None:
    """The customers' zones, as their orders would have brought them."""
    for customer_id, zone in zones.items():
        card = await session.scalar(select(Card).where(Card.customer_id == customer_id))
        assert card is not None
        card.time_zone = zone
    await session.commit()


async def pushed_in_all(
    standin: ApnsStandin, sessionmaker: async_sessionmaker[AsyncSession], pushes: int
) -> None:
    """Wait until the stand-in received ``pushes`` in all and nothing is left to push (work a
    scheduled job starts after a move of the clock)."""

    async def reached() -> bool:
        return standin.push_count >= pushes and await nothing_to_push(sessionmaker)

    await eventually(reached)
    assert standin.push_count == pushes


async def rows_of(sessionmaker: async_sessionmaker[AsyncSession], query: Select[Any]) -> list[Any]:
    """A query's rows, read in a transaction of its own (a test's session left open would
    hold SQLite's write lock against the services)."""
    async with sessionmaker() as session:
        return list((await session.execute(query)).all())


async def ordered_card(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], shop: Onboarded
) -> Card:
    """The card of customer c-42, issued by their first order through the orders API."""
    await post_order_event(client, shop.api_key, order_event("confirmed"))
    await settled(sessionmaker)
    [(card,)] = await rows_of(sessionmaker, select(Card).where(Card.customer_id == "c-42"))
    assert isinstance(card, Card)
    return card


async def nothing_held(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """No offer waits for the end of quiet hours any more."""
    held = select(CardOffer.id).where(CardOffer.state == "deferred")
    return not await rows_of(sessionmaker, held)
