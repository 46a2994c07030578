"""Offers on the card's Google object: the message ``card.updated`` carries for push (kind,
end of display, whether it may notify), the text modules and barcode, withdrawn messages,
and the Google saves that make a card count as on a device."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import Contract, GoogleWalletChanged, OfferWithdrawn
from services.core.clock import clock
from services.core.queue import OutboxMessage
from services.core.settings import Settings
from services.merchants import google_wallet
from services.onboarding import Onboarded
from services.passes.marketing import handlers
from services.passes.marketing.slot import message_id, offer_key
from services.passes.models import Card
from tests.e2e.marketing import at_noon, audience, offer
from tests.factories import create_card, create_merchant
from tests.integrations.google_wallet.conftest import ISSUER_ID

__all__ = ["at_noon"]


async def _google_shop(
    session: AsyncSession, settings: Settings, info: dict[str, str], tmp_path: Path
) -> Onboarded:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(info))
    shop = await create_merchant(session, settings)
    merchant = await session.merge(shop.merchant)
    await google_wallet.configure(
        session,
        merchant,
        issuer_id=ISSUER_ID,
        service_account_file=key_file,
        origins=["https://shop.example.com"],
    )
    await session.commit()
    return shop


async def _apply(sessionmaker: async_sessionmaker[AsyncSession], message: Contract) -> None:
    """Apply a message as the passes consumer would, in a transaction of its own."""
    handle = {
        "campaign.audience": handlers.campaign_audience,
        "offer.withdrawn": handlers.offer_withdrawn,
        "google_wallet.changed": handlers.google_wallet_changed,
    }[message.topic]
    async with sessionmaker() as session:
        await handle(session, message)  # type: ignore[operator]
        await session.commit()


async def _last_google(
    sessionmaker: async_sessionmaker[AsyncSession], card: Card
) -> dict[str, Any]:
    async with sessionmaker() as session:
        payload = await session.scalar(
            select(OutboxMessage.payload)
            .where(OutboxMessage.topic == "card.updated", OutboxMessage.key == str(card.id))
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert payload is not None
    return payload


async def test_an_offer_on_the_google_object(
    at_noon: datetime,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    service_account_info: dict[str, str],
    tmp_path: Path,
) -> None:
    shop = await _google_shop(session, settings, service_account_info, tmp_path)
    card = await create_card(session, shop, customer_id="g-1")
    # Not on a device yet: skipped; once saved, it shows, as a plain message (old news).
    early = offer("early", title="Early bird", coupon_code=None)
    await _apply(sessionmaker, audience(shop, early, ["g-1"], campaign_id=uuid.uuid4()))
    async with sessionmaker() as check:
        assert (await check.get_one(Card, card.id)).version == card.version
    await _apply(sessionmaker, GoogleWalletChanged(card_id=card.id, saved=True, at=at_noon))
    landed = await _last_google(sessionmaker, card)
    assert landed["version"] == card.version + 1
    assert landed.get("notification") is None
    assert landed["google"]["message"]["id"] == message_id("early")
    assert landed["google"]["message"]["important"] is False

    tea = offer()
    await _apply(sessionmaker, audience(shop, tea, ["g-1"], campaign_id=uuid.uuid4()))
    update = await _last_google(sessionmaker, card)
    assert update["notification"] == "marketing"
    message = update["google"]["message"]
    assert (message["id"], message["header"], message["body"]) == (
        message_id("tea-10"),
        "10 % off tea",
        "Every tea, until Sunday.",
    )
    assert (message["kind"], message["important"]) == ("marketing", True)
    assert datetime.fromisoformat(message["display_until"]) == tea.valid_until
    body = update["google"]["object"]
    modules = {m["id"]: m for m in body["textModulesData"]}
    module = modules[f"offer_{offer_key('tea-10')}"]
    assert module["header"] == "10 % off tea"
    assert module["body"].endswith("Kód kupónu: TEA10"), "in the customer's language"
    assert body["barcode"]["value"] == "TEA10"
    assert f"offer_{offer_key('tea-10')}" in {u["id"] for u in body["linksModuleData"]["uris"]}

    # A second the same day goes as a plain message (push sends it as TEXT).
    clock.advance(timedelta(hours=1))
    await _apply(
        sessionmaker,
        audience(shop, offer("more", coupon_code=None), ["g-1"], campaign_id=uuid.uuid4()),
    )
    capped = await _last_google(sessionmaker, card)
    assert capped["google"]["message"]["important"] is False
    assert capped.get("notification") is None

    await _apply(
        sessionmaker,
        OfferWithdrawn(merchant_id=shop.merchant.id, offer_id="tea-10", reason="cancelled"),
    )
    withdrawn = await _last_google(sessionmaker, card)
    assert withdrawn["google"]["withdrawn_messages"] == [message_id("tea-10")]
    assert "message" not in withdrawn["google"]
    assert withdrawn["google"]["object"]["barcode"]["value"] == card.serial_number

    # Removed from Google Wallet (and on no Apple device): the next offer skips the card.
    await _apply(
        sessionmaker,
        GoogleWalletChanged(card_id=card.id, saved=False, at=at_noon + timedelta(hours=2)),
    )
    # A late callback from before the removal changes nothing.
    await _apply(
        sessionmaker,
        GoogleWalletChanged(card_id=card.id, saved=True, at=at_noon + timedelta(minutes=5)),
    )
    before = (await _last_google(sessionmaker, card))["version"]
    await _apply(sessionmaker, audience(shop, offer("late"), ["g-1"], campaign_id=uuid.uuid4()))
    assert (await _last_google(sessionmaker, card))["version"] == before
