"""A campaign as a shop runs it: ``POST /v1/offers`` through orders (for a segment), passes and
push to the phones, its progress in ``GET /v1/campaigns/{id}``, then redemption and cancel
through the API taking the offer off the cards. The services are the real ones, together."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.settings import Settings
from services.onboarding import Onboarded
from services.passes.models import Card
from tests.e2e.marketing import (
    at_noon,
    card_on_phone,
    card_registered,
    fields,
    pass_json,
    rows_of,
    settled,
)
from tests.factories import (
    OFFERS,
    api_auth,
    create_card,
    create_merchant,
    offer_body,
    order_event,
    post_order_event,
)
from tests.waiting import eventually

__all__ = ["at_noon"]

VALID_UNTIL = "2026-12-08T00:00:00Z"
"""A week after the tests' noon."""


async def _campaign_done(
    client: httpx.AsyncClient, shop: Onboarded, offer: dict[str, Any]
) -> dict[str, Any]:
    url = f"/v1/campaigns/{offer['campaign_id']}"

    async def done() -> bool:
        answer = await client.get(url, headers=api_auth(shop))
        return bool(answer.json()["state"] == "done")

    await eventually(done)
    campaign: dict[str, Any] = (await client.get(url, headers=api_auth(shop))).json()
    return campaign


async def test_a_campaign_to_customers_reaches_their_phones_and_leaves_when_used_or_cancelled(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    jana, _ = await card_on_phone(client, session, shop, "jana")
    petr, _ = await card_on_phone(client, session, shop, "petr")
    target = {"customer_ids": ["jana", "petr", "nowhere", "unknown"]}
    nowhere = await create_card(session, shop, customer_id="nowhere")  # on no phone
    await settled(sessionmaker)
    pushes = standin.push_count

    body = offer_body(target, offer_id="tea-10", valid_until=VALID_UNTIL)
    created = await client.post(OFFERS, json=body, headers=api_auth(shop))
    assert created.status_code == 202, created.text
    offer = created.json()
    campaign = await _campaign_done(client, shop, offer)

    assert {k: campaign[k] for k in ("targeted", "updated", "notified", "deferred", "failed")} == {
        "targeted": 4,
        "updated": 2,
        "notified": 2,
        "deferred": 0,
        "failed": 0,
    }
    assert campaign["skipped"] == {"not_on_a_device": 1, "no_card": 1}
    await settled(sessionmaker)
    assert standin.push_count == pushes + 2, "one push per phone"
    assert fields(await pass_json(client, jana))["offer"]["value"] == body["title"]

    used = f"{OFFERS}/tea-10/redemptions"
    redeemed = await client.post(
        used, json={"customer_id": "jana", "code": "TEA10"}, headers=api_auth(shop)
    )
    assert redeemed.status_code == 201, redeemed.text
    again = await client.post(
        used, json={"customer_id": "jana", "code": "TEA10"}, headers=api_auth(shop)
    )
    assert again.status_code == 409
    await settled(sessionmaker)
    assert "offer" not in fields(await pass_json(client, jana)), "used: off jana's card"
    assert "offer" in fields(await pass_json(client, petr))

    # The card on no phone lands on one: the offer it missed shows, silently, and is counted.
    await card_registered(client, nowhere)
    await settled(sessionmaker)
    assert fields(await pass_json(client, nowhere))["offer"]["value"] == body["title"]
    url = f"/v1/campaigns/{offer['campaign_id']}"

    async def counted() -> bool:
        return bool((await client.get(url, headers=api_auth(shop))).json()["updated"] == 3)

    await eventually(counted)
    landed = (await client.get(url, headers=api_auth(shop))).json()
    assert landed["notified"] == 2
    assert landed["skipped"] == {"no_card": 1}
    assert landed["silent"] == {"later_on_a_device": 1}
    assert standin.push_count == pushes + 4, "the campaign's 2, the redemption's, the landing's"

    cancelled = await client.post(f"{OFFERS}/tea-10:cancel", headers=api_auth(shop))
    assert cancelled.status_code == 200, cancelled.text
    await settled(sessionmaker)
    assert "offer" not in fields(await pass_json(client, petr)), "cancelled: off every card"
    read = await client.get(f"/v1/campaigns/{offer['campaign_id']}", headers=api_auth(shop))
    assert read.json()["state"] == "cancelled"


async def test_a_segment_is_answered_by_orders_and_reaches_only_its_customers(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    # Delivered now: the feedback request falls due three days later, so it cannot take the
    # day's marketing notification before the campaign does (an order delivered days ago has
    # its request due at once, and the two would race for the cap).
    for customer, status in (("c-delivered", "delivered"), ("c-waiting", "confirmed")):
        event = order_event(
            status,
            order_id=f"o-{customer}",
            at=at_noon.isoformat(),
            customer={"id": customer, "name": "Jana", "locale": "cs"},
        )
        await post_order_event(client, shop.api_key, event)
    await settled(sessionmaker)
    for customer in ("c-delivered", "c-waiting"):
        await card_registered(client, await _card(sessionmaker, customer))
    await settled(sessionmaker)

    segment = {"segment": {"delivered_within_days": 30, "has_wallet": "any"}}
    body = offer_body(segment, offer_id="thanks", valid_until=VALID_UNTIL)
    created = await client.post(OFFERS, json=body, headers=api_auth(shop))
    assert created.status_code == 202, created.text
    campaign = await _campaign_done(client, shop, created.json())

    counts = (campaign["targeted"], campaign["updated"], campaign["notified"])
    assert counts == (1, 1, 1), f"{campaign}"
    await settled(sessionmaker)
    assert "offer" in fields(await pass_json(client, await _card(sessionmaker, "c-delivered")))
    assert "offer" not in fields(await pass_json(client, await _card(sessionmaker, "c-waiting")))


async def _card(sessionmaker: async_sessionmaker[AsyncSession], customer_id: str) -> Card:
    [(card,)] = await rows_of(sessionmaker, select(Card).where(Card.customer_id == customer_id))
    assert isinstance(card, Card)
    return card
