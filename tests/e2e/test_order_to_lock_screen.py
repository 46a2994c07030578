"""From an e-shop's order event to the lock screen, over HTTP, the queue and the stand-in."""

from __future__ import annotations

import io
import json
import re
import zipfile

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.queue import InboxMessage
from services.core.settings import Settings
from services.passes.models import Card
from tests.conftest import BASE_URL
from tests.e2e.conftest import installation
from tests.factories import (
    FULL,
    WS,
    create_merchant,
    order_event,
    pass_auth,
    post_order_event,
    register_device,
)
from tests.waiting import eventually, pushed, relayed


def _strings(bundle: zipfile.ZipFile, locale: str) -> dict[str, str]:
    text = bundle.read(f"{locale}.lproj/pass.strings").decode()
    return dict(re.findall(r'^"([^"]+)" = "((?:[^"\\]|\\.)*)";$', text, re.M))


async def _card(sessionmaker: async_sessionmaker[AsyncSession]) -> Card | None:
    async with sessionmaker() as session:
        return await session.scalar(select(Card))


async def _applied_by_passes(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> bool:
    applied = (
        select(func.count()).select_from(InboxMessage).where(InboxMessage.consumer == "passes")
    )
    async with sessionmaker() as session:
        return await session.scalar(applied) == count


async def test_an_order_moves_and_the_lock_screen_says_so(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    accepted = await post_order_event(client, shop.api_key, order_event("confirmed", **FULL))

    async def issued() -> bool:
        return await _card(sessionmaker) is not None

    await eventually(issued)
    card = await _card(sessionmaker)
    assert card is not None
    assert card.serial_number == accepted["card"]["serial_number"]
    auth = pass_auth(card)
    token = "0a" * 32
    await register_device(client, card, "phone-1", token)
    pass_url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    before = await client.get(pass_url, headers=auth)
    version_before = card.version

    await post_order_event(client, shop.api_key, order_event("shipped", at="2026-11-23T12:00:00Z"))
    await eventually(lambda: pushed(sessionmaker, card.id, devices=1))
    changed = await _card(sessionmaker)
    assert changed is not None
    assert changed.version > version_before
    assert standin.push_count == 1
    [push] = standin.received
    assert (push.token, push.topic) == (token, card.pass_type_identifier)
    fresh = await client.get(
        pass_url, headers={**auth, "If-Modified-Since": before.headers["last-modified"]}
    )
    assert fresh.status_code == 200
    with zipfile.ZipFile(io.BytesIO(fresh.content)) as bundle:
        document = json.loads(bundle.read("pass.json"))
        sk, en = _strings(bundle, "sk"), _strings(bundle, "en")
    [status] = document["storeCard"]["primaryFields"]
    assert status["value"] == "status.shipped"
    assert status["changeMessage"] == "status.change"
    assert (sk["status.shipped"], sk["status.change"]) == ("Na ceste", "Vaša objednávka 1001: %@")
    assert (en["status.shipped"], en["status.change"]) == ("On its way", "Your order 1001: %@")
    header = document["storeCard"]["headerFields"][0]
    assert (header["label"], header["value"]) == ("label.order", "1001")
    secondary = {f["key"]: f for f in document["storeCard"]["secondaryFields"]}
    assert secondary["eta"]["value"].startswith("2026-11-25")
    auxiliary = {f["key"]: f["value"] for f in document["storeCard"]["auxiliaryFields"]}
    assert auxiliary == {"carrier": "DPD", "tracking": "0123456789"}
    back = {f["key"]: f for f in document["storeCard"]["backFields"]}
    assert back["items"]["value"] == "1× Tea kettle"
    assert (back["total"]["value"], back["total"]["currencyCode"]) == (49.9, "EUR")
    assert back["link_order"]["value"] == "https://shop.example.com/orders/A-1001"
    assert back["link_tracking"]["value"] == "https://track.example.com/0123456789"
    assert back["link_returns"]["value"] == "https://shop.example.com/returns/A-1001"

    # A replayed event changes nothing and pushes nothing.
    await post_order_event(
        client,
        shop.api_key,
        order_event("shipped", event_id="evt_again", at="2026-11-23T12:00:00Z"),
    )
    await post_order_event(
        client,
        shop.api_key,
        order_event("shipped", event_id="evt_again", at="2026-11-23T12:00:00Z"),
    )
    await post_order_event(
        client, shop.api_key, order_event("delivered", at="2026-11-24T09:00:00Z")
    )
    await eventually(lambda: pushed(sessionmaker, card.id, devices=1))
    assert standin.push_count == 2, "the replay pushed nothing, the delivery once"
    delivered = await client.get(pass_url, headers=auth)
    with zipfile.ZipFile(io.BytesIO(delivered.content)) as bundle:
        document = json.loads(bundle.read("pass.json"))
    assert document["storeCard"]["primaryFields"][0]["value"] == "status.delivered"
    # After delivery the card keeps the order's summary (no estimate any more).
    assert document["storeCard"]["headerFields"][0]["value"] == "1001"
    assert "eta" not in {f["key"] for f in document["storeCard"]["secondaryFields"]}


async def test_events_accepted_while_push_is_down_are_pushed_when_it_returns(
    push_settings: Settings,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await create_merchant(session, push_settings)
    without_push = installation(push_settings, push=False)
    async with without_push.router.lifespan_context(without_push):
        transport = httpx.ASGITransport(app=without_push)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            await post_order_event(client, shop.api_key, order_event("confirmed"))

            async def issued() -> bool:
                return await _card(sessionmaker) is not None

            await eventually(issued)
            card = await _card(sessionmaker)
            assert card is not None
            for n in range(2):
                await register_device(client, card, f"phone-{n}", f"{n:02x}" * 32)
            for n, status in enumerate(("processing", "shipped", "out_for_delivery"), start=1):
                await post_order_event(
                    client, shop.api_key, order_event(status, at=f"2026-11-23T1{n}:00:00Z")
                )
            # The card shows all four changes before push returns (so they are coalesced).
            await eventually(lambda: _applied_by_passes(sessionmaker, 4))
            if push_settings.queue_backend == "nats":
                # All of them in the stream before push starts, so its first batch has them all
                # (a change the relay hands over later is a batch, and a push, of its own).
                await eventually(lambda: relayed(sessionmaker))
    assert standin.push_count == 0

    with_push = installation(push_settings)
    async with with_push.router.lifespan_context(with_push):
        await eventually(lambda: pushed(sessionmaker, card.id, devices=2))
        assert standin.push_count == 2
    # Three changes while push was down reach each device: coalesced, none lost.
    assert sorted(p.token for p in standin.received) == ["00" * 32, "01" * 32]
