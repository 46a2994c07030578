"""The add-to-wallet page, as a phone or a desktop browser gets it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.cards import card_links
from services.core.settings import Settings
from services.merchants import google_wallet
from services.merchants.models import Merchant
from services.onboarding import development_wallet_orders
from services.passes.models import Card
from tests.factories import create_card, create_merchant, order_event, post_order_event
from tests.waiting import eventually, queue_drained

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"
ANDROID = "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/130 Mobile"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130 Safari/537.36"


@pytest.fixture
async def card(session: AsyncSession, settings: Settings) -> Card:
    return await create_card(session, await create_merchant(session, settings), locale="sk")


def _buttons(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<a class="wallet (\w+)" id="\w+" href="([^"]+)"', page)


async def test_iphone_gets_apple_first_in_the_customers_language(
    client: httpx.AsyncClient, card: Card, settings: Settings
) -> None:
    links = card_links(card, settings.base_url())
    response = await client.get(links.landing_url, headers={"User-Agent": IPHONE})
    assert response.status_code == 200
    page = response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in page
    assert '<html lang="sk">' in page
    assert "Pridať do Apple Wallet" in page
    assert _buttons(page) == [("apple", links.apple_pass_url)]  # Google is not configured
    assert 'class="ios"' in page


async def test_android_gets_google_first(
    client: httpx.AsyncClient,
    card: Card,
    settings: Settings,
    session: AsyncSession,
    tmp_path: Path,
    service_account_info: dict[str, str],
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account_info))
    merchant = await session.get_one(Merchant, card.merchant_id)
    await google_wallet.configure(
        session,
        merchant,
        issuer_id="3388000000012345678",
        service_account_file=key_file,
        origins=[],
    )
    await session.commit()
    links = card_links(card, settings.base_url(), google=True)
    page = (await client.get(links.landing_url, headers={"User-Agent": ANDROID})).text
    buttons = _buttons(page)
    assert buttons == [("google", links.google_save_url), ("apple", links.apple_pass_url)]
    saved = await client.get(buttons[0][1])
    assert saved.status_code == 303
    assert saved.headers["location"].startswith("https://pay.google.com/gp/v/save/")
    assert 'class="qr"' in page
    assert "<svg" not in page.split('class="qr"')[1].split("</div>")[0]


async def test_desktop_gets_a_qr_code_of_the_page(
    client: httpx.AsyncClient, card: Card, settings: Settings
) -> None:
    page = (
        await client.get(
            card_links(card, settings.base_url()).landing_url, headers={"User-Agent": DESKTOP}
        )
    ).text
    assert 'class="desktop"' in page
    assert page.count("<svg") >= 2  # the icon and the QR code
    assert "Naskenujte kód telefónom" in page


@pytest.mark.parametrize("link", ["NoSuchCardLinkAtAll123456789", "short", "not%20a%20token"])
async def test_unknown_link_is_a_404_page(client: httpx.AsyncClient, link: str) -> None:
    """A customer's browser opens the link: a wrong one is an HTML page, as documented."""
    response = await client.get(f"/c/{link}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No card here" in response.text
    assert response.headers["x-robots-tag"] == "noindex, nofollow"


async def test_logo_is_served_for_google(client: httpx.AsyncClient, card: Card) -> None:
    response = await client.get("/assets/shop/logo@2x.png")
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    assert (await client.get("/assets/shop/secret.key")).status_code == 404


async def test_iphone_tracks_the_latest_order_in_apple_wallet_beside_the_card(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    await post_order_event(client, shop.api_key, order_event("confirmed", order_id="A-1"))
    later = order_event(order_id="A-2", at="2026-11-23T11:00:00Z")
    accepted = await post_order_event(client, shop.api_key, later)
    await eventually(lambda: queue_drained(sessionmaker))
    landing = accepted["card"]["landing_url"]
    page = (await client.get(landing, headers={"User-Agent": IPHONE})).text
    order_button = re.findall(
        r'<a class="wallet apple-order" id="apple-order" href="([^"]+)"', page
    )
    assert order_button == [accepted["wallet_order"]["url"]]
    assert "Sledovať v Apple Wallet" in page
    assert "Pridať do Apple Wallet" in page
    desktop = (await client.get(landing, headers={"User-Agent": DESKTOP})).text
    assert "apple-order" not in desktop
