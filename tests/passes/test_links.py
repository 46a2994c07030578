"""The customer links as the passes service answers them: a sealed link of ours issues its card
on demand; an HMAC link handed out before links were sealed keeps working; a link nobody
issued is one and the same 404, telling nothing about who exists; and a card issued on demand
while the ``order.changed`` consumer issues it is one card."""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import string
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.cards import card_links, customer_links, open_link, seal_customer
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.passes.card_orders import apply_order_change
from services.passes.card_view import PREPARING, current_order
from services.passes.issuing import card_behind_link
from services.passes.models import Card
from tests.factories import TEST_SECRET_KEY, create_card, create_merchant
from tests.passes.test_cards import change, message
from tests.waiting import eventually

OTHER_SECRET_KEY = b"another-installation-secret-key-32-characters"


async def _count_cards(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Card)) or 0)


def test_a_sealed_link_opens_only_under_its_key_and_is_the_same_every_time() -> None:
    merchant_id = uuid.uuid4()
    link = seal_customer(TEST_SECRET_KEY, merchant_id, "c-42")
    assert link == seal_customer(TEST_SECRET_KEY, merchant_id, "c-42")
    assert "c-42" not in base64.urlsafe_b64decode(link + "==").decode("latin-1")
    opened = open_link(TEST_SECRET_KEY, link)
    assert opened is not None
    assert (opened.merchant_id, opened.customer_id) == (merchant_id, "c-42")
    assert open_link(OTHER_SECRET_KEY, link) is None
    assert len(seal_customer(TEST_SECRET_KEY, merchant_id, "c-4")) == len(link)  # padded
    longest = seal_customer(TEST_SECRET_KEY, merchant_id, "é" * 400)
    assert open_link(TEST_SECRET_KEY, longest) is not None


async def test_links_nobody_issued_answer_one_and_the_same_404(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await create_merchant(session, settings)
    existing = await create_card(session, shop, customer_id="c-1")
    real = seal_customer(TEST_SECRET_KEY, shop.merchant.id, "c-2")
    swap = "A" if real[20] != "A" else "B"
    unissued = {
        "forged": base64.urlsafe_b64encode(os.urandom(len(real) * 3 // 4)).decode().rstrip("="),
        "mistyped": real[:20] + swap + real[21:],
        "cut short": real[:-3],
        "unknown merchant": seal_customer(TEST_SECRET_KEY, uuid.uuid4(), "c-2"),
        "another secret, customer with a card": seal_customer(
            OTHER_SECRET_KEY, shop.merchant.id, existing.customer_id
        ),
        "another secret, customer without one": seal_customer(
            OTHER_SECRET_KEY, shop.merchant.id, "c-3"
        ),
        "not a link": "x",
        "another spelling of the real one": _respelt(real),
    }
    suffixes = ("", "/pass.pkpass", "/google")
    answers: dict[str, set[tuple[str, bytes]]] = {suffix: set() for suffix in suffixes}
    for link in unissued.values():
        for suffix in suffixes:
            response = await client.get(f"/c/{link}{suffix}")
            assert response.status_code == 404, (link, suffix)
            answers[suffix].add((response.headers["content-type"], response.content))
    # One answer per route (the page a browser shows is HTML, the downloads' JSON).
    assert {suffix: len(seen) for suffix, seen in answers.items()} == dict.fromkeys(suffixes, 1)
    assert await _count_cards(sessionmaker) == 1, "nothing was issued"
    page = await client.get(f"/c/{real}")  # the real one works, in the merchant's language
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert "Your card is being prepared" in page.text


async def test_a_link_handed_out_before_links_were_sealed_keeps_working(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await create_merchant(session, settings)
    card = await create_card(session, shop, customer_id="c-7")
    message_ = f"link\x00{shop.merchant.id}\x00c-7".encode()
    old_link = base64.urlsafe_b64encode(hmac.digest(TEST_SECRET_KEY, message_, "sha256")[:24])
    card.link_token = old_link.decode()  # as cards issued before sealing store it
    await session.commit()
    old = card_links(card, settings.base_url())
    new = customer_links(
        TEST_SECRET_KEY, shop.merchant.id, "c-7", settings.base_url(), google=False
    )
    assert new.serial_number == old.serial_number
    for url in (old.landing_url, old.apple_pass_url, new.landing_url, new.apple_pass_url):
        assert (await client.get(url)).status_code == 200, url
    assert await _count_cards(sessionmaker) == 1, "the sealed link found the card, made none"


@pytest.mark.parametrize("first", ["link", "consumer"])
async def test_issued_on_demand_while_the_consumer_issues_it_is_one_card(
    session: AsyncSession,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    first: str,
) -> None:
    """Whoever inserts first holds its transaction open while the other runs into it."""
    shop = await create_merchant(session, settings)
    link = seal_customer(TEST_SECRET_KEY, shop.merchant.id, "c-1")
    event = change("A-1", "confirmed", 1, "2026-11-20T10:00")

    async def by_link(other: AsyncSession) -> Card:
        return await card_behind_link(other, link, TEST_SECRET_KEY, locale="de")

    async def by_consumer(other: AsyncSession) -> Card:
        merchant = await other.get_one(Merchant, shop.merchant.id)
        return await apply_order_change(other, merchant, message(merchant, event), TEST_SECRET_KEY)

    ahead, behind = (by_link, by_consumer) if first == "link" else (by_consumer, by_link)
    async with sessionmaker() as one, sessionmaker() as two:
        made = await ahead(one)
        racing = asyncio.create_task(_committed(two, behind))
        if session.bind.dialect.name == "postgresql":
            await eventually(lambda: _waiting_on_a_lock(sessionmaker))
        await one.commit()
        found = await racing
    assert found.id == made.id
    session.expire_all()
    [card] = (await session.scalars(select(Card))).all()
    assert current_order(card.content)["status"] == "confirmed"
    assert PREPARING not in card.content
    assert card.locale == "sk"  # the order's language wins over the visitor's


async def _committed(
    session: AsyncSession, work: Callable[[AsyncSession], Awaitable[Card]]
) -> Card:
    card = await work(session)
    await session.commit()
    return card


async def _waiting_on_a_lock(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    async with sessionmaker() as session:
        waiting = await session.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        )
        return bool(waiting)


def _respelt(token: str) -> str:
    """The same bytes in other base64: the last character with an unused low bit flipped."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    assert len(token) % 4 in (2, 3), "an unpadded length whose last character has spare bits"
    respelt = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(
        respelt + "=" * (-len(respelt) % 4)
    ) == base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return respelt
