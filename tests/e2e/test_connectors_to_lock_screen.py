"""A shop's platform, not its code, moves the card: each connector's webhooks carry an order
from placed to its last status, and every move reaches the phone through the APNs stand-in.

Payloads as each platform documents them (``tests/orders/connectors/platforms.py`` cites the
pages); Shoptet's API is a respx mock answering in its documented shapes, and its fetch job is
woken by moving the clock (never by waiting).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.clock import clock
from services.core.settings import Settings
from services.orders.connectors.models import ConnectorDelivery
from services.passes.models import Card
from tests.factories import WS, create_merchant, pass_auth, register_device
from tests.orders.connectors.conftest import connect
from tests.orders.connectors.platforms import (
    SHOPTET_API,
    SHOPTET_STATUSES,
    post_shopify,
    post_shoptet,
    post_woo,
    shopify_fulfillment,
    shopify_fulfillment_event,
    shopify_order,
    shoptet_order,
    shoptet_webhook,
    woo_order,
)
from tests.waiting import eventually, pushed

Step = Callable[..., Awaitable[object]]


def _shopify() -> list[Step]:
    return [
        lambda c: post_shopify(c, "orders/create", shopify_order("pending")),
        lambda c: post_shopify(
            c, "orders/paid", shopify_order("paid", updated_at="2026-11-23T11:00:00+01:00")
        ),
        lambda c: post_shopify(c, "fulfillments/create", shopify_fulfillment("in_transit")),
        lambda c: post_shopify(
            c,
            "fulfillment_events/create",
            shopify_fulfillment_event("delivered", happened_at="2026-11-26T09:00:00+01:00"),
        ),
    ]


def _woocommerce() -> list[Step]:
    return [
        lambda c: post_woo(c, "order.created", woo_order("pending")),
        lambda c: post_woo(
            c, "order.updated", woo_order("processing", modified="2026-11-23T10:00")
        ),
        lambda c: post_woo(
            c, "order.updated", woo_order("completed", modified="2026-11-24T08:00", tracking=True)
        ),
    ]


def _shoptet() -> list[Step]:
    return [
        lambda c, at=at: post_shoptet(c, shoptet_webhook(event="order:update", created=at))
        for at in (
            "2026-11-23T10:15:00+0100",
            "2026-11-23T11:00:00+0100",
            "2026-11-24T09:00:00+0100",
        )
    ]


LIVES = {
    "shopify": (_shopify, ["placed", "confirmed", "shipped", "delivered"]),
    "woocommerce": (_woocommerce, ["placed", "confirmed", "shipped"]),
    "shoptet": (_shoptet, ["placed", "processing", "shipped"]),
}


@pytest.fixture
async def shoptet_api() -> AsyncIterator[respx.MockRouter]:
    clock.set(datetime.now(UTC))
    with respx.mock(base_url=SHOPTET_API, assert_all_called=False) as api:
        api.get("/api/orders/statuses").respond(json=SHOPTET_STATUSES)
        api.get("/api/orders/2026000057").side_effect = [
            httpx.Response(200, json=shoptet_order(status_id, name, changed=changed))
            for status_id, name, changed in (
                (-1, "Nevyřízená", "2026-11-23T10:15:00+0100"),
                (-2, "Vyřizuje se", "2026-11-23T11:00:00+0100"),
                (-3, "Vyřízena", "2026-11-24T09:00:00+0100"),
            )
        ]
        yield api
    clock.reset()


async def _step(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    step: Step,
    deliveries: int,
) -> None:
    """One delivery, handled: its answer, and (Shoptet) its order fetched once the clock moved
    and woke the fetch job."""
    answer = await step(client)
    assert isinstance(answer, httpx.Response)
    assert answer.status_code == 200, answer.text
    clock.advance(timedelta(seconds=1))

    async def handled() -> bool:
        done = (
            select(func.count())
            .select_from(ConnectorDelivery)
            .where(ConnectorDelivery.outcome == "applied")
        )
        async with sessionmaker() as session:
            return await session.scalar(done) == deliveries

    await eventually(handled)


async def _card(sessionmaker: async_sessionmaker[AsyncSession]) -> Card | None:
    async with sessionmaker() as session:
        return await session.scalar(select(Card))


async def _shown(client: httpx.AsyncClient, url: str, card: Card) -> str:
    """The status the card's latest pass shows."""
    answer = await client.get(url, headers=pass_auth(card))
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        document = json.loads(bundle.read("pass.json"))
    return str(document["storeCard"]["primaryFields"][0]["value"])


@pytest.mark.parametrize("platform", sorted(LIVES))
async def test_an_order_life_through_the_platforms_webhooks_reaches_the_phone(
    platform: str,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    settings: Settings,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await connect(session, shop)
    life, statuses = LIVES[platform]
    steps = life()
    await _step(client, sessionmaker, steps[0], 1)

    async def issued() -> bool:
        return await _card(sessionmaker) is not None

    await eventually(issued)
    card = await _card(sessionmaker)
    assert card is not None
    await register_device(client, card, "phone-1", "0a" * 32)
    url = f"{WS}/passes/{card.pass_type_identifier}/{card.serial_number}"
    assert await _shown(client, url, card) == "status.placed"
    for n, (step, status) in enumerate(zip(steps[1:], statuses[1:], strict=True), start=2):
        await _step(client, sessionmaker, step, n)
        await eventually(lambda: pushed(sessionmaker, card.id, devices=1))
        assert await _shown(client, url, card) == f"status.{status}"
        assert standin.push_count == n - 1
    assert {p.token for p in standin.received} == {"0a" * 32}
