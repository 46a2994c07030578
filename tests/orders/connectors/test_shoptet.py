"""Shoptet's webhooks, the orders fetched from its API, and their mapping by status id.

The webhook body as developers.shoptet.com/api/documentation/webhooks/ shows it, signed in
``Shoptet-Webhook-Signature`` (hex HMAC-SHA1 of the body with the signature key); the API
answering as api.docs.shoptet.com documents ``GET /api/orders/{code}`` (getorderdetail) and
``GET /api/orders/statuses`` (getlistoforderstatuses): see ``platforms.py``. The fetch job runs
on the clock: the test moves it and waits for the delivery's state, never for time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.clock import clock
from services.onboarding import Onboarded
from services.orders.connectors import service
from services.orders.connectors.common import Platform
from services.orders.connectors.fetching import MAX_ATTEMPTS, backoff
from services.orders.connectors.models import ConnectorDelivery
from services.orders.connectors.schemas import ConnectorConfigure
from services.orders.models import Order, OrderEvent
from tests.factories import api_auth
from tests.orders.connectors.platforms import (
    SHOPTET_API,
    SHOPTET_KEY,
    SHOPTET_STATUSES,
    SHOPTET_TOKEN,
    body_of,
    post_shoptet,
    shoptet_order,
    shoptet_signature,
    shoptet_webhook,
)
from tests.orders.connectors.test_shopify import count
from tests.waiting import eventually

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CODE = "2026000057"
ORDER = f"/v1/orders/{CODE}"


@pytest.fixture
def shoptet_api(stopped_clock: None) -> Iterator[respx.MockRouter]:
    """The shop's API, answering as documented, and checking our token on every call."""
    clock.set(NOW)
    with respx.mock(base_url=SHOPTET_API, assert_all_called=False) as api:
        api.get("/api/orders/statuses", headers={"Shoptet-Access-Token": SHOPTET_TOKEN}).respond(
            json=SHOPTET_STATUSES
        )
        yield api


def _answers(api: respx.MockRouter, *answers: httpx.Response) -> respx.Route:
    route = api.get(f"/api/orders/{CODE}", headers={"Shoptet-Access-Token": SHOPTET_TOKEN})
    route.side_effect = list(answers)
    return route


def _detail(status_id: int, name: str, changed: str) -> httpx.Response:
    return httpx.Response(200, json=shoptet_order(status_id, name, changed=changed))


async def _delivery(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: str
) -> ConnectorDelivery:
    async with sessionmaker() as session:
        return await session.get_one(ConnectorDelivery, uuid.UUID(delivery_id))


async def _fetched(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    payload: dict[str, Any],
) -> ConnectorDelivery:
    """Post the webhook, move the clock so the job runs, and wait for the fetch to be done."""
    answer = await post_shoptet(client, payload)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "pending"
    delivery_id = answer.json()["delivery_id"]
    clock.advance(timedelta(seconds=1))

    async def done() -> bool:
        return (await _delivery(sessionmaker, delivery_id)).outcome != "pending"

    await eventually(done)
    return await _delivery(sessionmaker, delivery_id)


async def _status(client: httpx.AsyncClient, shop: Onboarded) -> str:
    return str((await client.get(ORDER, headers=api_auth(shop))).json()["status"])


async def test_an_order_life_fetched_from_the_shop(
    client: httpx.AsyncClient,
    connected: Onboarded,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    order = _answers(
        shoptet_api,
        _detail(-1, "Nevyřízená", "2026-11-23T10:15:00+0100"),
        _detail(12, "Zaplaceno", "2026-11-23T11:00:00+0100"),
        _detail(-2, "Vyřizuje se", "2026-11-23T12:00:00+0100"),
        _detail(-3, "Vyřízena", "2026-11-24T09:00:00+0100"),
        _detail(13, "Doručeno", "2026-11-25T09:00:00+0100"),
        _detail(13, "Doručeno", "2026-11-25T09:00:00+0100"),
    )
    created = await _fetched(client, sessionmaker, shoptet_webhook(event="order:create"))
    assert created.outcome == "applied"
    body = (await client.get(ORDER, headers=api_auth(connected))).json()
    assert body["status"] == "placed"
    assert body["customer"] == {
        "id": "e2c0a2c6-0c8d-11e9-a28d-0800273de8b5",
        "name": "Jana Nováková",
        "locale": "cs",
    }
    assert body["total"] == {"amount": "1290.00", "currency": "CZK"}
    assert body["items"] == [{"name": "Čajová konvice", "quantity": 1}]
    assert body["shipping"]["carrier"] == "PPL"

    for minute, ours in ((1, "confirmed"), (2, "processing"), (3, "shipped")):
        webhook = shoptet_webhook(created=f"2026-11-23T10:{minute:02d}:00+0100")
        assert (await _fetched(client, sessionmaker, webhook)).outcome == "applied"
        assert await _status(client, connected) == ours

    # The shop's own "Doručeno" (13) has no mapping until the merchant gives it one.
    unmapped = await _fetched(
        client, sessionmaker, shoptet_webhook(created="2026-11-23T10:04:00+0100")
    )
    assert unmapped.outcome == "unmappable"
    assert "'Doručeno' (id 13)" in (unmapped.reason or "")
    assert await _status(client, connected) == "shipped"
    await service.set_mapping(session, connected.merchant, Platform.shoptet, "13", "delivered")
    await session.commit()
    mapped = await _fetched(
        client, sessionmaker, shoptet_webhook(created="2026-11-23T10:05:00+0100")
    )
    assert mapped.outcome == "applied"
    assert await _status(client, connected) == "delivered"

    assert order.call_count == 6
    assert shoptet_api.routes[0].call_count == 1  # the statuses, read once
    history = (await client.get(ORDER, headers=api_auth(connected))).json()["history"]
    assert {h["connector"] for h in history} == {"shoptet"}
    listed = (await client.get("/v1/connectors/events", headers=api_auth(connected))).json()
    assert [d["outcome"] for d in listed["deliveries"]].count("applied") == 5


async def test_a_failing_fetch_is_tried_again_with_backoff(
    client: httpx.AsyncClient,
    connected: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    order = _answers(
        shoptet_api,
        httpx.Response(503, json={"data": None, "errors": [{"errorCode": "unavailable"}]}),
        httpx.ConnectError("connection refused"),
        _detail(-1, "Nevyřízená", "2026-11-23T10:15:00+0100"),
    )
    answer = await post_shoptet(client, shoptet_webhook(event="order:create"))
    delivery_id = answer.json()["delivery_id"]

    async def attempts(n: int) -> bool:
        return (await _delivery(sessionmaker, delivery_id)).attempts == n

    clock.advance(timedelta(seconds=1))
    await eventually(lambda: attempts(1))
    first = await _delivery(sessionmaker, delivery_id)
    assert (first.outcome, first.reason) == ("pending", "the shop's API answered 503")
    assert first.fetch_due_at == NOW + timedelta(seconds=1) + backoff(1)
    clock.advance(backoff(1))
    await eventually(lambda: attempts(2))
    assert "could not be reached" in ((await _delivery(sessionmaker, delivery_id)).reason or "")
    clock.advance(backoff(2))

    async def applied() -> bool:
        return (await _delivery(sessionmaker, delivery_id)).outcome == "applied"

    await eventually(applied)
    assert order.call_count == 3
    assert await _status(client, connected) == "placed"


async def test_a_fetch_that_never_succeeds_is_given_up(
    client: httpx.AsyncClient,
    connected: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    shoptet_api.get(f"/api/orders/{CODE}").respond(404, json={"data": None, "errors": []})
    answer = await post_shoptet(client, shoptet_webhook(event="order:create"))
    delivery_id = answer.json()["delivery_id"]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        clock.advance(backoff(attempt))

        async def tried(n: int = attempt) -> bool:
            return (await _delivery(sessionmaker, delivery_id)).attempts == n

        await eventually(tried)
    failed = await _delivery(sessionmaker, delivery_id)
    assert (failed.outcome, failed.fetch_due_at) == ("failed", None)
    assert await count(sessionmaker, Order) == 0


async def test_signatures_bad_missing_and_rotated(
    client: httpx.AsyncClient,
    connected: Onboarded,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    body = body_of(shoptet_webhook())
    url = "/v1/connectors/shoptet/shop"
    bad = {"Shoptet-Webhook-Signature": shoptet_signature("another-key", body)}
    for headers in (bad, {}):
        assert (await client.post(url, content=body, headers=headers)).status_code == 401
    assert await count(sessionmaker, ConnectorDelivery) == 0
    upper = {"Shoptet-Webhook-Signature": shoptet_signature(SHOPTET_KEY, body).upper()}
    assert (await client.post(url, content=body, headers=upper)).status_code == 200

    new_key = "shoptet-renewed-signature-key-42"
    rotation = ConnectorConfigure(secrets=[new_key])
    await service.configure(session, connected.merchant, Platform.shoptet, rotation)
    await session.commit()
    second = shoptet_webhook(created="2026-11-23T10:01:00+0100")
    assert (await post_shoptet(client, second)).status_code == 200
    assert (await post_shoptet(client, second, key=new_key)).json()["outcome"] == "redelivered"
    await service.configure(
        session, connected.merchant, Platform.shoptet, ConnectorConfigure(revoke_old=True)
    )
    await session.commit()
    third = shoptet_webhook(created="2026-11-23T10:02:00+0100")
    assert (await post_shoptet(client, third)).status_code == 401


async def test_a_redelivery_is_not_fetched_again(
    client: httpx.AsyncClient,
    connected: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    order = _answers(shoptet_api, _detail(-1, "Nevyřízená", "2026-11-23T10:15:00+0100"))
    webhook = shoptet_webhook(event="order:create")
    await _fetched(client, sessionmaker, webhook)
    again = await post_shoptet(client, webhook)
    assert again.json()["outcome"] == "redelivered"
    assert order.call_count == 1
    assert await count(sessionmaker, OrderEvent) == 1


async def test_an_older_state_read_late_never_moves_the_card_back(
    client: httpx.AsyncClient,
    connected: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
    shoptet_api: respx.MockRouter,
) -> None:
    _answers(
        shoptet_api,
        _detail(-3, "Vyřízena", "2026-11-24T09:00:00+0100"),
        _detail(-3, "Vyřízena", "2026-11-24T09:00:00+0100"),
        _detail(-2, "Vyřizuje se", "2026-11-23T12:00:00+0100"),
    )
    await _fetched(client, sessionmaker, shoptet_webhook(event="order:create"))
    same_state = await _fetched(
        client, sessionmaker, shoptet_webhook(created="2026-11-23T10:01:00+0100")
    )
    assert same_state.outcome == "duplicate"
    older = await _fetched(
        client, sessionmaker, shoptet_webhook(created="2026-11-23T10:02:00+0100")
    )
    assert older.outcome == "stale"
    assert await _status(client, connected) == "shipped"


async def test_events_that_name_no_order_are_recorded_not_fetched(
    client: httpx.AsyncClient,
    connected: Onboarded,
    shoptet_api: respx.MockRouter,
) -> None:
    other = {**shoptet_webhook(), "event": "invoice:create"}
    assert (await post_shoptet(client, other)).json()["outcome"] == "ignored"
    nameless = {k: v for k, v in shoptet_webhook().items() if k != "eventInstance"}
    assert (await post_shoptet(client, nameless)).json()["outcome"] == "unmappable"
