"""What the orders service answers of a campaign's segment: who ordered what, a page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.cli import ServiceName, components_of
from services.contracts.messages import (
    CampaignAudience,
    CampaignStarted,
    CardCriteria,
    OfferView,
    OrderChanged,
    OrderCriteria,
)
from services.core.settings import Settings
from services.core.web import create_app
from services.onboarding import Onboarded
from services.orders.segments import customers_page
from tests.factories import EVENTS, OFFERS, api_auth, batch, offer_body, order_event
from tests.offers.conftest import NOW, published, stopped_clock  # noqa: F401 (a fixture)
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("stopped_clock")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """``serve orders`` (the orders and offers APIs), without the passes and push services,
    whose work on the cards of a thousand new orders would only make these tests wait."""
    app = create_app(settings, components_of(ServiceName.orders, settings))
    async with app.router.lifespan_context(app):
        yield app


def days_ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def event(
    order_id: str, customer: str, status: str, days: int, total: str | None = None, **more: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {"customer": {"id": customer}, **more}
    if total is not None:
        amount, currency = total.split()
        fields["total"] = {"amount": amount, "currency": currency}
    return order_event(status, order_id=order_id, at=days_ago(days), **fields)


async def post_all(
    client: httpx.AsyncClient, shop: Onboarded, events: list[dict[str, Any]]
) -> None:
    for start in range(0, len(events), 500):
        response = await client.post(
            f"{EVENTS}:batch", json=batch(*events[start : start + 500]), headers=api_auth(shop)
        )
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} == {202}


async def test_a_segment_over_many_customers_is_answered_in_pages_of_500(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    customers = [f"p-{n:04}" for n in range(1201)]
    events = [event(f"o-{c}", c, "confirmed", 3) for c in customers]
    events.append(event("o-p-0007-2", "p-0007", "confirmed", 2))  # two orders, one customer
    await post_all(client, shop, events)
    response = await client.post(
        OFFERS,
        json=offer_body({"segment": {"ordered_within_days": 7, "has_wallet": "apple"}}),
        headers=api_auth(shop),
    )
    assert response.status_code == 202, response.text

    async def last_part() -> bool:
        return any(p.parts for p in await published(sessionmaker, CampaignAudience))

    await eventually(last_part)
    parts = await published(sessionmaker, CampaignAudience)
    assert [(p.part, p.parts, len(p.customer_ids or [])) for p in parts] == [
        (1, None, 500),
        (2, None, 500),
        (3, 3, 201),
    ]
    assert [c for p in parts for c in p.customer_ids or []] == customers
    assert {p.cards.has_wallet for p in parts} == {"apple"}
    pages = await published(sessionmaker, CampaignStarted)
    assert [(p.part, p.after) for p in pages] == [(1, None), (2, "p-0499"), (3, "p-0999")]
    assert {p.as_of for p in pages} == {NOW}


async def test_an_empty_segment_is_one_empty_part(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    response = await client.post(
        OFFERS, json=offer_body({"segment": {"min_orders": 1}}), headers=api_auth(shop)
    )
    assert response.status_code == 202

    async def answered() -> bool:
        return bool(await published(sessionmaker, CampaignAudience))

    await eventually(answered)
    (part,) = await published(sessionmaker, CampaignAudience)
    assert (part.part, part.parts, part.customer_ids) == (1, 1, [])


@pytest.fixture
async def histories(client: httpx.AsyncClient, shop: Onboarded) -> None:
    """a: three orders of 40 EUR, the last delivered 8 days ago; b: one of 200 EUR long ago;
    c: 80 EUR and a cancelled 100 EUR, 40 days ago; d: 500 CZK 5 days ago."""
    await post_all(
        client,
        shop,
        [
            event("a-1", "a", "confirmed", 100, "40.00 EUR"),
            event("a-2", "a", "confirmed", 50, "40.00 EUR"),
            event("a-3", "a", "confirmed", 10, "40.00 EUR"),
            event("a-3", "a", "delivered", 8),
            event("b-1", "b", "confirmed", 200, "200.00 EUR"),
            event("b-1", "b", "delivered", 190),
            event("c-1", "c", "confirmed", 40, "80.00 EUR"),
            event("c-2", "c", "cancelled", 40, "100.00 EUR"),
            event("d-1", "d", "confirmed", 5, "500.00 CZK"),
        ],
    )


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"ordered_within_days": 30}, ["a", "d"]),
        ({"not_ordered_for_days": 30}, ["b", "c"]),
        ({"min_orders": 2}, ["a"]),
        ({"min_orders": 1}, ["a", "b", "c", "d"]),
        ({"min_total_spent": {"amount": "100.00", "currency": "EUR"}}, ["a", "b"]),
        ({"min_total_spent": {"amount": "120.00", "currency": "EUR"}}, ["a", "b"]),
        ({"min_total_spent": {"amount": "120.01", "currency": "EUR"}}, ["b"]),
        ({"min_total_spent": {"amount": "400", "currency": "CZK"}}, ["d"]),
        ({"delivered_within_days": 10}, ["a"]),
        ({"delivered_within_days": 7}, []),
        (
            {
                "not_ordered_for_days": 30,
                "min_total_spent": {"amount": "100.00", "currency": "EUR"},
            },
            ["b"],
        ),
    ],
)
@pytest.mark.usefixtures("histories")
async def test_order_criteria_hold_for_their_customers(
    shop: Onboarded,
    session: AsyncSession,
    criteria: dict[str, Any],
    expected: list[str],
) -> None:
    started = CampaignStarted(
        campaign_id="00000000-0000-0000-0000-000000000001",
        merchant_id=shop.merchant.id,
        offer=OfferView(id="o", title="t", text="t", valid_until=NOW, created_at=NOW),
        orders=OrderCriteria.model_validate(criteria),
        cards=CardCriteria(),
    )
    assert await customers_page(session, started, NOW) == expected


async def test_the_customers_time_zone_travels_with_the_order(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    customer = {"id": "c-42", "name": "Jana", "locale": "cs", "time_zone": "Europe/Prague"}
    response = await client.post(
        EVENTS, json=order_event(customer=customer), headers=api_auth(shop)
    )
    assert response.status_code == 202, response.text
    assert response.json()["order"]["customer"]["time_zone"] == "Europe/Prague"
    later = order_event("shipped", at="2026-11-23T12:00:00Z", customer={"id": "c-42"})
    await client.post(EVENTS, json=later, headers=api_auth(shop))
    changes = await published(sessionmaker, OrderChanged)
    assert [c.order.customer.time_zone for c in changes] == ["Europe/Prague", "Europe/Prague"]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "europe/prague"])
async def test_a_time_zone_that_is_no_iana_name_is_422(
    client: httpx.AsyncClient, shop: Onboarded, zone: str
) -> None:
    body = order_event(customer={"id": "c-42", "time_zone": zone})
    response = await client.post(EVENTS, json=body, headers=api_auth(shop))
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "body.order.customer.time_zone"
