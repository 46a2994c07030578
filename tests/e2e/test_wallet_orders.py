"""Apple Wallet Orders end to end: order events over HTTP -> a package version -> a push at the
APNs stand-in (topic = the order type id) -> the device lists its modified orders and fetches
the new package; every status code of the Orders web service; Apple's package rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.contracts.messages import WalletOrderUpdated
from services.contracts.wallet_orders import authentication_token, order_identifier
from services.core.queue import OutboxMessage
from services.core.settings import Settings
from services.onboarding import development_wallet_orders
from services.passes.models import WalletOrder, WalletOrderRegistration
from services.push.models import PushTarget
from tests.factories import FULL, create_merchant, order_event, post_order_event, push_token
from tests.waiting import eventually, nothing_to_push, queue_drained
from tests.wallet_order_rules import check_package, check_rising

WO = "/wallet-orders/v1"
DEVICES_PER_ORDER = 2


@pytest.fixture
def push_settings(push_settings: Settings) -> Settings:
    """Few devices per order, so the limit is reached in a test."""
    return push_settings.model_copy(update={"max_devices_per_card": DEVICES_PER_ORDER})


async def _wallet_order(
    sessionmaker: async_sessionmaker[AsyncSession], version: int = 1
) -> WalletOrder | None:
    async with sessionmaker() as session:
        order = await session.scalar(select(WalletOrder))
        return order if order is not None and order.version >= version else None


async def _reached(
    sessionmaker: async_sessionmaker[AsyncSession], order: WalletOrder, devices: int
) -> bool:
    """Nothing left to push, and ``devices`` devices were sent the order's current version."""
    if not await nothing_to_push(sessionmaker):
        return False
    version = select(WalletOrder.version).where(WalletOrder.id == order.id).scalar_subquery()
    reached = (
        select(func.count())
        .select_from(PushTarget)
        .where(PushTarget.card_id == order.id, PushTarget.sent_version == version)
    )
    async with sessionmaker() as session:
        return await session.scalar(reached) == devices


def _auth(settings: Settings, order: WalletOrder) -> dict[str, str]:
    token = authentication_token(settings.resolved_secret_key(), order.order_identifier)
    return {"Authorization": f"AppleOrder {token}"}


def _fulfillment(order_json: dict[str, Any]) -> dict[str, Any]:
    (fulfillment,) = order_json["fulfillments"]
    return fulfillment


async def test_an_order_in_wallet_moves_and_its_device_hears_of_it(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    root = settings.keys_dir / "dev-root.pem"
    accepted = await post_order_event(client, shop.api_key, order_event("confirmed", **FULL))
    given = accepted["wallet_order"]
    apple_pay = given["apple_pay"]
    assert set(apple_pay) == {
        "orderTypeIdentifier",
        "orderIdentifier",
        "webServiceURL",
        "authenticationToken",
    }
    assert apple_pay["orderTypeIdentifier"] == "order.dev.passpost.shop"
    assert apple_pay["webServiceURL"].endswith("/wallet-orders")
    assert apple_pay["authenticationToken"] not in given["url"]
    await eventually(lambda: _has(sessionmaker))
    order = await _wallet_order(sessionmaker)
    assert order is not None
    assert order.order_identifier == apple_pay["orderIdentifier"]

    download = await client.get(given["url"].removeprefix(str(client.base_url)))
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/vnd.apple.finance.order"
    first = check_package(download.content, root, tmp_path / "v1")
    assert first["status"] == "open"
    assert _fulfillment(first)["status"] == "open"
    assert first["authenticationToken"] == apple_pay["authenticationToken"]
    assert first["orderNumber"] == "1001"
    assert first["lineItems"] == [{"title": "Tea kettle", "quantity": 1}]
    assert first["orderManagementURL"] == "https://shop.example.com/orders/A-1001"
    assert _fulfillment(first)["trackingNumber"] == "0123456789"

    auth = _auth(settings, order)
    device, token = "phone-1", push_token()
    order_path = f"{order.order_type_identifier}/{order.order_identifier}"
    path = f"{WO}/devices/{device}/registrations/{order_path}"
    wrong = {"Authorization": "AppleOrder " + "0" * 40}
    assert (await client.post(path, json={"pushToken": token}, headers=wrong)).status_code == 401
    assert (await client.post(path, json={"pushToken": token})).status_code == 401
    assert (await client.post(path, json={"pushToken": "zz"}, headers=auth)).status_code == 400
    assert (await client.post(path, json={"pushToken": token}, headers=auth)).status_code == 201
    assert (await client.post(path, json={"pushToken": token}, headers=auth)).status_code == 200

    listing = f"{WO}/devices/{device}/registrations/{order.order_type_identifier}"
    listed = await client.get(listing)
    assert listed.status_code == 200
    body = listed.json()
    assert body["orderIdentifiers"] == [order.order_identifier]
    assert isinstance(body["lastModified"], str)
    since = body["lastModified"]
    assert (await client.get(listing, params={"ordersModifiedSince": since})).status_code == 204

    latest = f"{WO}/orders/{order.order_type_identifier}/{order.order_identifier}"
    assert (await client.get(latest)).status_code == 401
    fetched = await client.get(latest, headers=auth)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "application/vnd.apple.finance.order"
    assert fetched.content == download.content, "one package per version, built once"
    modified = fetched.headers["last-modified"]
    again = await client.get(latest, headers={**auth, "If-Modified-Since": modified})
    assert again.status_code == 304

    await post_order_event(
        client, shop.api_key, order_event("shipped", at="2026-11-23T12:00:00Z", **FULL)
    )
    await eventually(lambda: _has(sessionmaker, version=2))
    order = await _wallet_order(sessionmaker, version=2)
    assert order is not None
    await eventually(lambda: _reached(sessionmaker, order, devices=1))
    assert [p.topic for p in standin.received] == [order.order_type_identifier]
    assert standin.received[0].token == token
    assert standin.received[0].payload_json == {}

    listed = await client.get(listing, params={"ordersModifiedSince": since})
    assert listed.json()["orderIdentifiers"] == [order.order_identifier]
    stale = await client.get(latest, headers={**auth, "If-Modified-Since": modified})
    assert stale.status_code == 200, "a new version is never a 304"
    second = check_package(stale.content, root, tmp_path / "v2")
    assert second["status"] == "open"
    assert _fulfillment(second)["status"] == "shipped"
    assert _fulfillment(second)["shippedAt"] == "2026-11-23T12:00:00.000Z"

    # The carrier reports, and the parcel is out for delivery within the same second.
    moved = {**FULL, "shipping": {**FULL["shipping"], "estimated_delivery": "2026-11-26"}}
    await post_order_event(
        client, shop.api_key, order_event("shipped", at="2026-11-23T13:00:00Z", **moved)
    )
    await post_order_event(
        client, shop.api_key, order_event("out_for_delivery", at="2026-11-23T13:00:00Z", **moved)
    )
    await eventually(lambda: _has(sessionmaker, version=4))
    order = await _wallet_order(sessionmaker, version=4)
    assert order is not None
    await eventually(lambda: _reached(sessionmaker, order, devices=1))
    fourth = check_package((await client.get(latest, headers=auth)).content, root, tmp_path / "v4")
    assert _fulfillment(fourth)["status"] == "outForDelivery"
    check_rising([first, second, fourth])

    await post_order_event(
        client, shop.api_key, order_event("delivered", at="2026-11-24T09:00:00Z", **moved)
    )
    await eventually(lambda: _has(sessionmaker, version=5))
    delivered = check_package(
        (await client.get(latest, headers=auth)).content, root, tmp_path / "v5"
    )
    assert delivered["status"] == "completed"
    assert _fulfillment(delivered)["status"] == "delivered"
    assert _fulfillment(delivered)["deliveredAt"] == "2026-11-24T09:00:00.000Z"

    assert (
        await client.post(f"{WO}/log", json={"logs": ["order fetch failed"]})
    ).status_code == 200
    assert (await client.delete(path, headers=wrong)).status_code == 401
    assert (await client.delete(path, headers=auth)).status_code == 200
    async with sessionmaker() as fresh:
        assert await fresh.scalar(select(func.count()).select_from(WalletOrderRegistration)) == 0


async def _has(sessionmaker: async_sessionmaker[AsyncSession], version: int = 1) -> bool:
    return await _wallet_order(sessionmaker, version) is not None


async def test_a_wallet_order_not_made_yet_asks_the_device_to_come_back(
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    key = settings.resolved_secret_key()
    identifier = order_identifier(key, shop.merchant.id, "not-sent-yet")
    auth = {"Authorization": f"AppleOrder {authentication_token(key, identifier)}"}
    order_type = "order.dev.passpost.shop"
    latest = await device_client.get(f"{WO}/orders/{order_type}/{identifier}", headers=auth)
    assert latest.status_code == 503
    assert int(latest.headers["retry-after"]) > 0
    register = await device_client.post(
        f"{WO}/devices/d/registrations/{order_type}/{identifier}",
        json={"pushToken": push_token()},
        headers=auth,
    )
    assert register.status_code == 503
    assert (await device_client.get(f"{WO}/orders/{order_type}/not-an-id")).status_code == 404
    malformed = await device_client.get(f"{WO}/devices/d!/registrations/{order_type}")
    assert malformed.status_code == 400
    forged = await device_client.get(f"/wallet-orders/packages/{identifier}/{'0' * 32}")
    assert forged.status_code == 404


async def test_wallet_orders_off_answer_null_and_make_nothing(
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    accepted = await post_order_event(device_client, shop.api_key, order_event("confirmed"))
    assert accepted["wallet_order"] is None
    await eventually(lambda: queue_drained(sessionmaker))
    assert await _wallet_order(sessionmaker) is None


async def test_versions_no_device_has_are_not_announced_to_push(
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Most Wallet orders are on no device: their versions are kept for the device that may
    come, and push, with nobody to tell, hears nothing of them."""
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    for status in ("confirmed", "processing", "shipped"):
        await post_order_event(device_client, shop.api_key, order_event(status, **FULL))
    await eventually(lambda: _has(sessionmaker, version=3))
    await eventually(lambda: queue_drained(sessionmaker))
    async with sessionmaker() as reader:
        topics = set((await reader.scalars(select(OutboxMessage.topic))).all())
    assert "order.changed" in topics
    assert WalletOrderUpdated.topic not in topics


async def test_a_dead_token_loses_its_wallet_order_registration(
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    await post_order_event(device_client, shop.api_key, order_event("confirmed"))
    await eventually(lambda: _has(sessionmaker))
    order = await _wallet_order(sessionmaker)
    assert order is not None
    token = push_token()
    standin.fail(token, 410)
    path = (
        f"{WO}/devices/phone/registrations/{order.order_type_identifier}/{order.order_identifier}"
    )
    registered = await device_client.post(
        path, json={"pushToken": token}, headers=_auth(settings, order)
    )
    assert registered.status_code == 201
    await post_order_event(device_client, shop.api_key, order_event("processing"))

    async def dropped() -> bool:
        async with sessionmaker() as fresh:
            left = await fresh.scalar(select(func.count()).select_from(WalletOrderRegistration))
        return left == 0 and await queue_drained(sessionmaker)

    await eventually(dropped)
    assert standin.push_count == 1


async def test_an_order_takes_as_many_devices_as_a_card(
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    await post_order_event(device_client, shop.api_key, order_event("confirmed"))
    await eventually(lambda: _has(sessionmaker))
    order = await _wallet_order(sessionmaker)
    assert order is not None
    auth = _auth(settings, order)
    order_path = f"{order.order_type_identifier}/{order.order_identifier}"
    answers = [
        await device_client.post(
            f"{WO}/devices/phone-{n}/registrations/{order_path}",
            json={"pushToken": push_token()},
            headers=auth,
        )
        for n in range(DEVICES_PER_ORDER + 1)
    ]
    assert [a.status_code for a in answers] == [201] * DEVICES_PER_ORDER + [429]
    assert int(answers[-1].headers["retry-after"]) > 0


async def test_an_event_posted_again_is_answered_as_before_with_its_wallet_order(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    """A shop's retry replays the stored answer, Apple's names in ``apple_pay`` and all (the
    replay once read them back by our names and answered 500)."""
    shop = await create_merchant(session, settings)
    await development_wallet_orders(session, settings, shop.merchant)
    await session.commit()
    event = order_event("confirmed")
    first = await post_order_event(client, shop.api_key, event)
    again = await post_order_event(client, shop.api_key, event)
    assert again["duplicate"] is True
    assert again["wallet_order"] == first["wallet_order"]
    assert set(first["wallet_order"]["apple_pay"]) == {
        "orderTypeIdentifier",
        "orderIdentifier",
        "webServiceURL",
        "authenticationToken",
    }
