"""``POST /v1/events`` and ``:batch`` as ``serve orders`` serves them: authentication,
idempotency, bad input with field paths, and the ``shop.event`` published with each event."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import ShopEventReceived
from services.contracts.shop_events import EVENT_TYPES
from services.merchants import service as merchants
from services.merchants.models import Merchant
from services.onboarding import Onboarded
from tests.factories import SHOP_EVENTS, api_auth, order_event, post_order_event, shop_event
from tests.offers.conftest import published

CART = {"cart_id": "cart-1", "url": "https://shop.example.com/cart/1"}


async def test_each_event_is_published_once_and_its_id_answers_the_same(
    client: httpx.AsyncClient, shop: Onboarded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    event = shop_event("cart.abandoned", "ana", CART, name="Ana", locale="cs")
    first = await client.post(SHOP_EVENTS, json=event, headers=api_auth(shop))
    assert first.status_code == 202, first.text
    order = await post_order_event(client, shop.api_key, order_event(customer={"id": "ana"}))
    assert first.json()["card"] == order["card"], "the links of the same card"
    again = await client.post(SHOP_EVENTS, json=event, headers=api_auth(shop))
    assert again.json() == {**first.json(), "duplicate": True}
    changed = {**event, "data": {**CART, "cart_id": "cart-2"}}
    refused = await client.post(SHOP_EVENTS, json=changed, headers=api_auth(shop))
    assert refused.status_code == 409, refused.text
    assert refused.json()["details"]["event_id"] == event["id"]

    [message] = await published(sessionmaker, ShopEventReceived)
    assert (message.merchant_id, message.event.type) == (shop.merchant.id, "cart.abandoned")
    assert message.event.customer.locale == "cs"
    watch = await client.post(
        SHOP_EVENTS,
        json=shop_event("customer.watch", "ana", {"product_id": "p-1"}),
        headers=api_auth(shop),
    )
    assert watch.json()["card"] is None, "only the types that make the card answer its links"


async def test_an_unknown_type_names_the_allowed_ones_and_data_errors_their_path(
    client: httpx.AsyncClient, shop: Onboarded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    unknown = await client.post(
        SHOP_EVENTS, json=shop_event("order.placed", data={}), headers=api_auth(shop)
    )
    assert unknown.status_code == 422, unknown.text
    [error] = unknown.json()["errors"]
    assert error["path"] == "body.type"
    assert all(kind in unknown.text for kind in EVENT_TYPES)

    bad_url = shop_event("cart.abandoned", data={"cart_id": "c", "url": "not a url"})
    answer = await client.post(SHOP_EVENTS, json=bad_url, headers=api_auth(shop))
    assert answer.status_code == 422
    assert _paths(answer.json()) == ["body.data.url"]
    rising = shop_event(
        "price.dropped",
        data={
            "product": {"id": "p", "name": "Tea"},
            "old_price": {"amount": "5", "currency": "EUR"},
            "new_price": {"amount": "6", "currency": "EUR"},
        },
    )
    answer = await client.post(SHOP_EVENTS, json=rising, headers=api_auth(shop))
    assert answer.status_code == 422
    assert "a drop" in answer.text
    assert await published(sessionmaker, ShopEventReceived) == [], "nothing refused is kept"


async def test_a_batch_answers_each_event_in_its_place(
    client: httpx.AsyncClient, shop: Onboarded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ok = shop_event("customer.registered", "eva")
    events = [ok, {"id": "x", "type": "cart.abandoned"}, ok, {**ok, "customer": {"id": "zed"}}]
    answer = await client.post(
        f"{SHOP_EVENTS}:batch", json={"events": events}, headers=api_auth(shop)
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 202, 409]
    assert results[2]["body"]["duplicate"] is True
    assert results[0]["body"]["card"]["landing_url"]
    assert len(await published(sessionmaker, ShopEventReceived)) == 1
    too_many = {"events": [ok] * 501}
    refused = await client.post(f"{SHOP_EVENTS}:batch", json=too_many, headers=api_auth(shop))
    assert refused.status_code == 422


async def test_the_shop_api_key_and_signature_are_required(
    client: httpx.AsyncClient, shop: Onboarded, session: AsyncSession
) -> None:
    event = shop_event("customer.registered", "eva")
    assert (await client.post(SHOP_EVENTS, json=event)).status_code == 401
    merchant = await session.get_one(Merchant, shop.merchant.id)
    secret = await merchants.rotate_signing_secret(session, merchant, enable=True)
    await session.commit()
    assert secret is not None
    unsigned = await client.post(SHOP_EVENTS, json=event, headers=api_auth(shop))
    assert unsigned.status_code == 401
    body = httpx.Request("POST", "/", json=event).content
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        **api_auth(shop),
        "Passpost-Signature": f"t={stamp},v1={mac}",
        "Content-Type": "application/json",
    }
    signed = await client.post(SHOP_EVENTS, content=body, headers=headers)
    assert signed.status_code == 202, signed.text


def _paths(body: dict[str, Any]) -> list[str]:
    return [error["path"] for error in body["errors"]]
