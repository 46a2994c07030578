"""WooCommerce's order webhooks to order events.

Payloads and headers as WooCommerce documents them: see ``platforms.py`` (the REST API's order
at woocommerce.github.io/woocommerce-rest-api-docs/#order-properties, its "Webhooks" section
for the delivery headers and the ping).
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.onboarding import Onboarded
from services.orders.connectors import service
from services.orders.connectors.common import Platform
from services.orders.connectors.schemas import ConnectorConfigure
from services.orders.models import Order, OrderEvent
from tests.factories import api_auth
from tests.orders.connectors.platforms import (
    WOO_SECRET,
    body_of,
    post_woo,
    woo_headers,
    woo_order,
)
from tests.orders.connectors.test_shopify import count

ORDER = "/v1/orders/727"
URL = "/v1/connectors/woocommerce/shop"


async def _order(client: httpx.AsyncClient, shop: Onboarded) -> dict[str, Any]:
    answer = await client.get(ORDER, headers=api_auth(shop))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_the_ping_after_set_up_is_200(
    client: httpx.AsyncClient, connected: Onboarded
) -> None:
    ping = await client.post(
        URL,
        content=b"webhook_id=12",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ping.status_code == 200
    assert ping.json()["outcome"] == "ping"


async def test_an_order_life_through_its_webhooks(
    client: httpx.AsyncClient, connected: Onboarded
) -> None:
    created = await post_woo(client, "order.created", woo_order("pending"))
    assert created.json()["outcome"] == "applied", created.text
    order = await _order(client, connected)
    assert order["status"] == "placed"
    assert order["customer"]["id"] == "26"
    assert order["customer"]["name"] == "John Doe"
    assert order["total"] == {"amount": "49.90", "currency": "EUR"}
    assert order["items"] == [{"name": "Woo Single #1", "quantity": 2}]

    for status, modified, ours in (
        ("on-hold", "2026-11-23T09:20:00", "placed"),
        ("processing", "2026-11-23T10:00:00", "confirmed"),
        ("completed", "2026-11-24T08:00:00", "shipped"),
        ("cancelled", "2026-11-29T08:00:00", "cancelled"),
        ("refunded", "2026-11-30T08:00:00", "refunded"),
    ):
        update = woo_order(status, modified=modified, tracking=status != "processing")
        answer = await post_woo(client, "order.updated", update)
        assert answer.status_code == 200, answer.text
        assert (await _order(client, connected))["status"] == ours
    order = await _order(client, connected)
    assert order["shipping"]["carrier"] == "DPD"
    assert order["shipping"]["tracking_number"] == "0123456789"
    assert {h["connector"] for h in order["history"]} == {"woocommerce"}
    assert (await post_woo(client, "order.deleted", {"id": 727})).json()["outcome"] == "ignored"


async def test_signatures_bad_missing_and_rotated(
    client: httpx.AsyncClient,
    connected: Onboarded,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = body_of(woo_order())
    bad = woo_headers("order.created", body, secret="wrong-secret-0123")
    missing = {k: v for k, v in bad.items() if k != "X-WC-Webhook-Signature"}
    for headers in (bad, missing):
        assert (await client.post(URL, content=body, headers=headers)).status_code == 401
    assert await count(sessionmaker, OrderEvent) == 0

    new = "wc-webhook-secret-rotated-9876"
    both = ConnectorConfigure(secrets=[WOO_SECRET, new])
    await service.configure(session, connected.merchant, Platform.woocommerce, both)
    await session.commit()
    assert (await post_woo(client, "order.created", woo_order())).status_code == 200
    later = woo_order("processing", modified="2026-11-23T10:00:00")
    assert (await post_woo(client, "order.updated", later, secret=new)).status_code == 200
    await service.configure(
        session, connected.merchant, Platform.woocommerce, ConnectorConfigure(revoke_old=True)
    )
    await session.commit()
    old = woo_order("completed", modified="2026-11-24T10:00:00")
    assert (await post_woo(client, "order.updated", old)).status_code == 401


async def test_redeliveries_with_new_delivery_ids_apply_once(
    client: httpx.AsyncClient, connected: Onboarded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    payload = woo_order()
    first = await post_woo(client, "order.created", payload)
    again = await post_woo(client, "order.created", payload)  # a new X-WC-Webhook-Delivery-ID
    assert first.json()["outcome"] == "applied"
    assert again.json()["outcome"] == "redelivered"
    assert await count(sessionmaker, OrderEvent) == 1


async def test_out_of_order_deliveries(client: httpx.AsyncClient, connected: Onboarded) -> None:
    await post_woo(client, "order.created", woo_order())
    await post_woo(client, "order.updated", woo_order("completed", modified="2026-11-24T08:00:00"))
    late = await post_woo(
        client, "order.updated", woo_order("processing", modified="2026-11-23T10:00:00")
    )
    assert late.json()["outcome"] == "stale"
    assert (await _order(client, connected))["status"] == "shipped"


async def test_unmappable_and_ignored_change_no_order(
    client: httpx.AsyncClient, connected: Onboarded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    guest = woo_order(customer_id=0)
    guest["billing"]["email"] = ""
    assert (await post_woo(client, "order.created", guest)).json()["outcome"] == "unmappable"
    draft = woo_order("checkout-draft", modified="2026-11-23T09:16:00")
    assert (await post_woo(client, "order.created", draft)).json()["outcome"] == "ignored"
    plugin = woo_order("shipped-by-plugin", modified="2026-11-23T09:17:00")
    answer = await post_woo(client, "order.created", plugin)
    assert answer.json()["outcome"] == "unmappable"
    assert "'shipped-by-plugin'" in answer.json()["reason"]
    assert await count(sessionmaker, Order) == 0


async def test_a_plugins_status_mapped_by_the_merchant(
    client: httpx.AsyncClient, connected: Onboarded, session: AsyncSession
) -> None:
    await service.set_mapping(
        session, connected.merchant, Platform.woocommerce, "delivered", "delivered"
    )
    await service.set_mapping(
        session, connected.merchant, Platform.woocommerce, "completed", "delivered"
    )
    await session.commit()
    await post_woo(client, "order.created", woo_order())
    await post_woo(client, "order.updated", woo_order("completed", modified="2026-11-24T08:00:00"))
    assert (await _order(client, connected))["status"] == "delivered"
