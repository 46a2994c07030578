"""Shopify's webhooks to order events: signatures, mapping, redeliveries and order.

Payloads and headers as Shopify documents them: see ``platforms.py`` (the REST Admin API's
Order, Fulfillment, FulfillmentEvent and Refund at shopify.dev/docs/api/admin-rest, the webhook
headers at shopify.dev/docs/apps/build/webhooks).
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.onboarding import Onboarded
from services.orders.connectors import service
from services.orders.connectors.common import Platform
from services.orders.connectors.schemas import ConnectorConfigure
from services.orders.models import Order, OrderEvent
from tests.factories import api_auth
from tests.orders.connectors.platforms import (
    SHOPIFY_SECRET,
    body_of,
    post_shopify,
    shopify_fulfillment,
    shopify_fulfillment_event,
    shopify_headers,
    shopify_order,
    shopify_refund,
)

ORDER = "/v1/orders/450789469"


async def _order(client: httpx.AsyncClient, shop: Onboarded) -> dict[str, Any]:
    answer = await client.get(ORDER, headers=api_auth(shop))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def count(sessionmaker: async_sessionmaker[AsyncSession], table: type[Any]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_an_order_made_and_moved_by_its_webhooks(
    client: httpx.AsyncClient, connected: Onboarded
) -> None:
    created = await post_shopify(client, "orders/create", shopify_order("pending"))
    assert created.status_code == 200, created.text
    assert created.json()["outcome"] == "applied"
    order = await _order(client, connected)
    assert order["status"] == "placed"
    assert order["number"] == "#1001"
    assert order["customer"] == {"id": "207119551", "name": "Bob Norman", "locale": "sk"}
    assert order["total"] == {"amount": "49.90", "currency": "EUR"}
    assert order["items"] == [{"name": "IPod Nano - 8gb - green", "quantity": 1}]

    paid = shopify_order("paid", updated_at="2026-11-23T11:00:00+01:00")
    await post_shopify(client, "orders/paid", paid)
    await post_shopify(client, "fulfillments/create", shopify_fulfillment("label_printed"))
    in_transit = shopify_fulfillment("in_transit", updated_at="2026-11-24T12:00:00+01:00")
    await post_shopify(client, "fulfillments/update", in_transit)
    order = await _order(client, connected)
    assert order["status"] == "shipped"
    assert order["shipping"]["carrier"] == "DPD"
    assert order["shipping"]["tracking_number"] == "0123456789"
    assert order["shipping"]["tracking_url"].startswith("https://tracking.dpd.de/")

    for status, at, ours in (
        ("out_for_delivery", "2026-11-25T08:00:00+01:00", "out_for_delivery"),
        ("attempted_delivery", "2026-11-25T12:00:00+01:00", "delivery_issue"),
        ("delivered", "2026-11-26T09:00:00+01:00", "delivered"),
    ):
        event = shopify_fulfillment_event(status, happened_at=at)
        answer = await post_shopify(client, "fulfillment_events/create", event)
        assert answer.json()["outcome"] == "applied", answer.text
        assert (await _order(client, connected))["status"] == ours
    order = await _order(client, connected)
    assert order["shipping"]["estimated_delivery"] == "2026-11-26"
    history = order["history"]
    assert [h["connector"] for h in history] == ["shopify"] * len(history)
    assert all(h["delivery"] for h in history)
    assert len({h["delivery"] for h in history}) == len(history)

    # A partial refund keeps the status; one that covers the total refunds the order.
    partial = await post_shopify(client, "refunds/create", shopify_refund("10.00"))
    assert partial.json()["outcome"] == "ignored"
    full = shopify_refund("49.90", created_at="2026-12-01T10:00:00+01:00")
    assert (await post_shopify(client, "refunds/create", full)).json()["outcome"] == "applied"
    assert (await _order(client, connected))["status"] == "refunded"


async def test_cancelled_order(client: httpx.AsyncClient, connected: Onboarded) -> None:
    await post_shopify(client, "orders/create", shopify_order("authorized"))
    cancelled = shopify_order(
        "voided", updated_at="2026-11-23T12:00:00+01:00", cancelled_at="2026-11-23T12:00:00+01:00"
    )
    await post_shopify(client, "orders/cancelled", cancelled)
    assert (await _order(client, connected))["status"] == "cancelled"


async def test_a_bad_or_missing_signature_is_401_and_changes_nothing(
    client: httpx.AsyncClient,
    connected: Onboarded,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = body_of(shopify_order())
    url = "/v1/connectors/shopify/shop"
    bad = shopify_headers("orders/create", body, secret="not-the-secret")
    missing = {k: v for k, v in bad.items() if k != "X-Shopify-Hmac-Sha256"}
    tampered = shopify_headers("orders/create", body)
    for headers, content in ((bad, body), (missing, body), (tampered, body + b" ")):
        answer = await client.post(url, content=content, headers=headers)
        assert answer.status_code == 401, answer.text
    unknown = await client.post("/v1/connectors/shopify/nobody", content=body, headers=tampered)
    assert unknown.status_code == 401
    assert await count(sessionmaker, OrderEvent) == 0
    assert (await client.get("/v1/connectors/events", headers=api_auth(connected))).json() == {
        "deliveries": []
    }


async def test_a_rotated_secret_keeps_the_old_one_until_revoked(
    client: httpx.AsyncClient, connected: Onboarded, session: AsyncSession
) -> None:
    new = "shpss_new-secret-after-the-rotation"
    rotation = ConnectorConfigure(secrets=[new])
    await service.configure(session, connected.merchant, Platform.shopify, rotation)
    await session.commit()
    old_signed = await post_shopify(client, "orders/create", shopify_order(), secret=SHOPIFY_SECRET)
    assert old_signed.status_code == 200
    paid = shopify_order("paid", updated_at="2026-11-23T11:00:00+01:00")
    assert (await post_shopify(client, "orders/paid", paid, secret=new)).status_code == 200

    revoke = ConnectorConfigure(revoke_old=True)
    await service.configure(session, connected.merchant, Platform.shopify, revoke)
    await session.commit()
    later = shopify_order("paid", updated_at="2026-11-23T12:00:00+01:00")
    refused = await post_shopify(client, "orders/updated", later, secret=SHOPIFY_SECRET)
    assert refused.status_code == 401
    assert (await post_shopify(client, "orders/updated", later, secret=new)).status_code == 200


async def test_a_redelivery_is_answered_and_applied_once(
    client: httpx.AsyncClient,
    connected: Onboarded,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    payload = shopify_order()
    first = await post_shopify(client, "orders/create", payload, webhook_id="b54557e4-bdd9-4b37")
    again = await post_shopify(client, "orders/create", payload, webhook_id="b54557e4-bdd9-4b37")
    assert first.json()["outcome"] == "applied"
    assert again.status_code == 200
    assert again.json()["outcome"] == "redelivered"
    assert await count(sessionmaker, OrderEvent) == 1
    listed = (await client.get("/v1/connectors/events", headers=api_auth(connected))).json()
    assert len(listed["deliveries"]) == 1


async def test_an_older_delivery_arriving_late_never_moves_the_card_back(
    client: httpx.AsyncClient, connected: Onboarded, session: AsyncSession
) -> None:
    await post_shopify(client, "orders/create", shopify_order())
    delivered = shopify_fulfillment_event("delivered", happened_at="2026-11-26T09:00:00+01:00")
    await post_shopify(client, "fulfillment_events/create", delivered)
    late = shopify_fulfillment("in_transit", updated_at="2026-11-24T12:00:00+01:00")
    answer = await post_shopify(client, "fulfillments/update", late)
    assert answer.json()["outcome"] == "stale"
    order = await _order(client, connected)
    assert order["status"] == "delivered"
    assert [h["outcome"] for h in order["history"]] == ["applied", "stale", "applied"]


async def test_unmappable_payloads_are_accepted_listed_and_change_nothing(
    client: httpx.AsyncClient,
    connected: Onboarded,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    guest = shopify_order(customer={})
    guest["email"] = None
    answer = await post_shopify(client, "orders/create", guest)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "unmappable"
    strange = await post_shopify(client, "orders/updated", shopify_order("on_a_journey"))
    assert strange.json()["outcome"] == "unmappable"
    orphan = shopify_fulfillment("in_transit")
    assert (await post_shopify(client, "fulfillments/create", orphan)).json()["outcome"] == (
        "unmappable"
    )
    assert await count(sessionmaker, Order) == 0
    listed = await client.get(
        "/v1/connectors/events", params={"outcome": "unmappable"}, headers=api_auth(connected)
    )
    reasons = [d["reason"] for d in listed.json()["deliveries"]]
    assert len(reasons) == 3
    assert any("missing customer" in r for r in reasons)
    assert any("'on_a_journey'" in r for r in reasons)
    metrics = (await client.get("/metrics")).text
    assert 'passpost_connector_deliveries_total{outcome="unmappable",platform="shopify"}' in metrics


async def test_the_merchants_mapping_overrides_the_table(
    client: httpx.AsyncClient, connected: Onboarded, session: AsyncSession
) -> None:
    await service.set_mapping(session, connected.merchant, Platform.shopify, "paid", "processing")
    await session.commit()
    await post_shopify(client, "orders/create", shopify_order())
    paid = shopify_order("paid", updated_at="2026-11-23T11:00:00+01:00")
    await post_shopify(client, "orders/paid", paid)
    assert (await _order(client, connected))["status"] == "processing"
