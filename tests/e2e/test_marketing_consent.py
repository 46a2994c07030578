"""Consent: the customer's "No offers, thanks" page and the shop's records, end to end."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.contracts.messages import MarketingConsentSet
from services.core.clock import clock
from services.core.settings import Settings
from services.passes.marketing.models import MarketingConsent
from tests.e2e import offers_standin
from tests.e2e.marketing import (
    at_noon,
    audience,
    card_registered,
    fields,
    notifying_changes,
    offer,
    ordered_card,
    pass_json,
    rows_of,
    send,
    settled,
)
from tests.factories import create_merchant, order_event, post_order_event

__all__ = ["at_noon"]


async def test_no_offers_thanks_from_the_cards_page_and_order_updates_still_flow(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    card = await ordered_card(client, sessionmaker, shop)
    await card_registered(client, card)
    await send(sessionmaker, audience(shop, offer("first"), ["c-42"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    with_offer = await pass_json(client, card)
    page_url = fields(with_offer)["no_offers"]["value"].removeprefix(settings.base_url())
    pushes = standin.push_count

    # Opening the page (or a link preview fetching it) changes nothing.
    page = await client.get(page_url)
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert re.search(r'<button type="submit" id="opt-out">Ponuky nie, ďakujem</button>', page.text)
    assert "form-action 'self'" in page.headers["content-security-policy"]
    await settled(sessionmaker)
    assert standin.push_count == pushes

    # The confirm button: the offer leaves the card, quietly.
    done = await client.post(page_url, data={"consent": "no"})
    assert done.status_code == 200
    assert 'id="done"' in done.text
    assert 'id="opt-in"' in done.text, "and they can opt in again there"
    await settled(sessionmaker)
    assert standin.push_count == pushes + 1
    without = await pass_json(client, card)
    assert "offer" not in fields(without)
    assert notifying_changes(with_offer, without) == set()

    # The next campaign skips the card; an order update still notifies.
    clock.advance(timedelta(days=1))
    skipped_campaign = uuid.uuid4()
    await send(
        sessionmaker, audience(shop, offer("second"), ["c-42"], campaign_id=skipped_campaign)
    )
    await settled(sessionmaker)
    assert standin.push_count == pushes + 1
    [progress] = [p for p in offers_standin.progress if p.campaign_id == skipped_campaign]
    assert (progress.targeted, progress.updated, progress.skipped) == (1, 0, {"opted_out": 1})
    await post_order_event(client, shop.api_key, order_event("shipped", at="2026-11-23T12:00:00Z"))
    await settled(sessionmaker)
    assert standin.push_count == pushes + 2
    shipped = await pass_json(client, card)
    assert notifying_changes(without, shipped) == {"status"}

    # Yes again, from the same page: the next offer notifies.
    again = await client.post(page_url, data={"consent": "yes"})
    assert 'id="opt-out"' in again.text
    clock.advance(timedelta(days=1))
    await send(sessionmaker, audience(shop, offer("third"), ["c-42"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    assert standin.push_count == pushes + 3
    assert notifying_changes(shipped, await pass_json(client, card)) == {"offer"}
    assert offers_standin.channel_totals()["suppressed.opted_out"] == 1


async def test_the_page_refuses_an_unknown_choice_and_an_unknown_link(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    card = await ordered_card(device_client, sessionmaker, shop)
    url = f"/c/{card.link_token}/marketing"
    refused = await device_client.post(url, data={"consent": "maybe"})
    assert refused.status_code == 422
    assert refused.json()["details"]["errors"][0]["loc"] == ["body", "consent"]
    assert (await device_client.get("/c/" + "A" * 43 + "/marketing")).status_code == 404
    assert await rows_of(sessionmaker, select(MarketingConsent)) == []


async def test_the_latest_consent_wins_whoever_set_it(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The shop's records (``POST /v1/customers/{id}/marketing`` -> ``marketing.consent``)
    and the customer's page: the later ``at`` holds, even when it arrives first."""
    shop = await create_merchant(session, settings)
    card = await ordered_card(device_client, sessionmaker, shop)
    merchant_id = shop.merchant.id

    def shop_says(consent: bool, at: datetime) -> MarketingConsentSet:
        return MarketingConsentSet(
            merchant_id=merchant_id, customer_id="c-42", consent=consent, at=at
        )

    await send(sessionmaker, shop_says(False, at_noon))
    await settled(sessionmaker)
    assert 'id="opt-in"' in (await device_client.get(f"/c/{card.link_token}/marketing")).text
    # The customer says yes an hour later on the page ...
    clock.advance(timedelta(hours=1))
    await device_client.post(f"/c/{card.link_token}/marketing", data={"consent": "yes"})
    # ... and a shop record from before that arrives late: the customer's choice holds.
    await send(sessionmaker, shop_says(False, at_noon + timedelta(minutes=30)))
    await settled(sessionmaker)
    [(record,)] = await rows_of(sessionmaker, select(MarketingConsent))
    assert (record.consent, record.source) == (True, "customer")
    # A newer shop record wins over it.
    await send(sessionmaker, shop_says(False, at_noon + timedelta(hours=2)))
    await settled(sessionmaker)
    [(record,)] = await rows_of(sessionmaker, select(MarketingConsent))
    assert (record.consent, record.source) == (False, "shop")
