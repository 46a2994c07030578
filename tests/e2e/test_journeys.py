"""Journeys end to end: shop events through ``POST /v1/events``, the queue and the journeys'
job to the pass on the phone and the APNs stand-in, with the clock moved by the test (delays,
cancellations, the once-only welcome, caps and quiet hours)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.clock import clock
from services.core.settings import Settings
from services.merchants import journeys, marketing
from services.merchants.models import Merchant
from services.passes.journeys.models import JourneyStep
from services.passes.models import Card
from tests.e2e.marketing import (
    at_noon,
    card_registered,
    fields,
    notifying_changes,
    pass_json,
    pushed_in_all,
    rows_of,
    settled,
)
from tests.factories import (
    SHOP_EVENTS,
    api_auth,
    create_card,
    create_merchant,
    order_event,
    post_order_event,
    post_shop_event,
    shop_event,
)
from tests.waiting import eventually, queue_drained

__all__ = ["at_noon"]

CART = {"cart_id": "cart-1", "url": "https://shop.example.com/cart/1", "items": [{"name": "Tea"}]}


async def steps(sessionmaker: async_sessionmaker[AsyncSession], journey: str) -> list[Any]:
    """(customer, key, state, reason) of a journey's steps, by customer."""
    query = (
        select(Card.customer_id, JourneyStep.key, JourneyStep.state, JourneyStep.reason)
        .join(Card, Card.id == JourneyStep.card_id)
        .where(JourneyStep.journey == journey)
        .order_by(Card.customer_id, JourneyStep.created_at)
    )
    return [tuple(row) for row in await rows_of(sessionmaker, query)]


async def card_of(sessionmaker: async_sessionmaker[AsyncSession], customer_id: str) -> Card:
    [(card,)] = await rows_of(sessionmaker, select(Card).where(Card.customer_id == customer_id))
    assert isinstance(card, Card)
    return card


async def advanced(
    sessionmaker: async_sessionmaker[AsyncSession], by: timedelta, journey: str, states: set[str]
) -> None:
    """Once what was posted is applied, move the clock and wait until the journey's steps are
    all in ``states``."""
    await eventually(lambda: queue_drained(sessionmaker))
    clock.advance(by)

    async def reached() -> bool:
        return {row[2] for row in await steps(sessionmaker, journey)} <= states

    await eventually(reached)
    await settled(sessionmaker)


async def stats(client: httpx.AsyncClient, shop: Any) -> dict[str, Any]:
    """The shop's stats of the last week."""
    first, last = (clock.now() - timedelta(days=7)).date(), clock.now().date()
    response = await client.get(f"/v1/stats?from={first}&to={last}", headers=api_auth(shop))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_sign_up_issues_the_card_and_welcomes_once_on_its_first_device(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    event = shop_event("customer.registered", "ana", name="Ana", locale="sk-SK")

    answer = await post_shop_event(client, shop, event)
    order = await post_order_event(client, shop.api_key, order_event(customer={"id": "x"}))
    assert answer["card"].keys() == order["card"].keys(), "the links as order events give them"
    assert answer["card"]["landing_url"].startswith(settings.base_url())
    assert (answer["type"], answer["duplicate"]) == ("customer.registered", False)
    again = await client.post(SHOP_EVENTS, json=event, headers=api_auth(shop))
    assert (again.status_code, again.json()) == (202, {**answer, "duplicate": True})
    other = await client.post(
        SHOP_EVENTS, json={**event, "customer": {"id": "bob"}}, headers=api_auth(shop)
    )
    assert other.status_code == 409, other.text
    await settled(sessionmaker)
    card = await card_of(sessionmaker, "ana")
    assert (card.customer_name, card.locale) == ("Ana", "sk")
    assert await steps(sessionmaker, "welcome") == [("ana", "welcome", "waiting", None)]
    before = await pass_json(client, card)

    await card_registered(client, card)
    await advanced(sessionmaker, timedelta(seconds=1), "welcome", {"shown"})
    await pushed_in_all(standin, sessionmaker, 1)
    after = await pass_json(client, card)
    assert notifying_changes(before, after) == {"offer"}, "one lock-screen line"
    assert fields(after)["offer"]["value"] == f"Vitajte v {shop.merchant.name}"

    # Another device, another sign-up event: never a second welcome.
    await client.post(
        f"/passkit/v1/devices/tablet/registrations/{card.pass_type_identifier}/"
        f"{card.serial_number}",
        json={"pushToken": "ab" * 32},
        headers={"Authorization": f"ApplePass {card.authentication_token}"},
    )
    await post_shop_event(client, shop, shop_event("customer.registered", "ana"))
    await advanced(sessionmaker, timedelta(minutes=1), "welcome", {"shown"})
    assert standin.push_count == 1
    assert (await stats(client, shop))["journeys"] == {"welcome": 1}


async def test_a_cart_reminder_after_the_delay_unless_ordered_recovered_or_reminded(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    merchant = await session.get_one(Merchant, shop.merchant.id)
    await journeys.update_journey(
        session, merchant, "cart_abandoned", {"offer": {"code": "FREESHIP", "valid_days": 2}}
    )
    await session.commit()
    cards = {c: await create_card(session, shop, customer_id=c) for c in ("eva", "olga", "rita")}
    for card in cards.values():
        await card_registered(client, card)
    before = await pass_json(client, cards["eva"])
    for customer in cards:
        await post_shop_event(client, shop, shop_event("cart.abandoned", customer, CART))
    await post_shop_event(client, shop, shop_event("cart.abandoned", "newcomer", CART))
    await settled(sessionmaker)
    assert (await card_of(sessionmaker, "newcomer")).customer_id == "newcomer", "card made"
    # Olga orders, Rita comes back to her cart: their reminders are off.
    placed = (clock.now() + timedelta(minutes=5)).isoformat()
    customer = {"id": "olga", "name": "Olga"}
    await post_order_event(client, shop.api_key, order_event(at=placed, customer=customer))
    await post_shop_event(client, shop, shop_event("cart.recovered", "rita", {"cart_id": "cart-1"}))
    await settled(sessionmaker)
    pushes = standin.push_count  # olga's order status

    await advanced(sessionmaker, timedelta(minutes=59), "cart_abandoned", {"pending", "cancelled"})
    assert standin.push_count == pushes, "not before the hour"
    await advanced(
        sessionmaker, timedelta(minutes=2), "cart_abandoned", {"shown", "cancelled", "skipped"}
    )
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    assert await steps(sessionmaker, "cart_abandoned") == [
        ("eva", "cart-1", "shown", None),
        ("newcomer", "cart-1", "skipped", "not_on_a_device"),
        ("olga", "cart-1", "cancelled", "ordered"),
        ("rita", "cart-1", "cancelled", "recovered"),
    ]
    after = await pass_json(client, cards["eva"])
    assert notifying_changes(before, after) == {"offer"}
    shown = fields(after)
    assert shown["offer"]["value"] == "Váš košík na vás čaká"
    assert any(f["value"] == CART["url"] for f in shown.values()), "the cart's link"
    assert after["barcodes"][0]["message"] == "FREESHIP", "the template's coupon"

    # Another cart two days later: reminded within 7 days, so no second reminder.
    clock.advance(timedelta(days=2))
    again = {**CART, "cart_id": "cart-2"}
    await post_shop_event(client, shop, shop_event("cart.abandoned", "eva", again))
    await advanced(
        sessionmaker, timedelta(hours=2), "cart_abandoned", {"expired", "skipped", "cancelled"}
    )
    assert ("eva", "cart-2", "skipped", "reminded_recently") in await steps(
        sessionmaker, "cart_abandoned"
    )
    assert standin.push_count == pushes + 2, "only the quiet update taking cart-1's off"
    document = await pass_json(client, cards["eva"])
    assert "FREESHIP" not in str(document), "expired: taken off"
    assert notifying_changes(after, document) == set()


async def test_a_price_drop_waits_for_the_quiet_hours_to_end_and_respects_the_caps(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    cards = {c: await create_card(session, shop, customer_id=c) for c in ("ivan", "jan", "kim")}
    for card in cards.values():
        await card_registered(client, card)
    for customer in cards:
        await post_shop_event(
            client, shop, shop_event("customer.watch", customer, {"product_id": "p-1"})
        )
    await post_shop_event(
        client, shop, shop_event("customer.unwatch", "kim", {"product_id": "p-1"})
    )
    # Jan had a welcome today: the day's cap (1) is used up.
    await post_shop_event(client, shop, shop_event("customer.registered", "jan"))
    await advanced(sessionmaker, timedelta(seconds=1), "welcome", {"shown"})
    await pushed_in_all(standin, sessionmaker, 1)
    clock.set(at_noon.replace(hour=22))  # quiet hours (21:00-08:00 UTC, the default)
    drop = {
        "product": {"id": "p-1", "name": "Green tea", "url": "https://shop.example.com/p-1"},
        "old_price": {"amount": "12.00", "currency": "EUR"},
        "new_price": {"amount": "9.50", "currency": "EUR"},
    }
    ivan_before = await pass_json(client, cards["ivan"])
    await post_shop_event(client, shop, shop_event("price.dropped", "shop", drop))
    await advanced(sessionmaker, timedelta(seconds=1), "price_dropped", {"deferred", "shown"})
    assert [row[::2] for row in await steps(sessionmaker, "price_dropped")] == [
        ("ivan", "deferred"),
        ("jan", "shown"),
    ], "ivan's waits for the morning; jan's is capped, so shown silently now; kim unwatched"
    await pushed_in_all(standin, sessionmaker, 2)
    jans = fields(await pass_json(client, cards["jan"]))["offer"]
    assert (jans["value"], "changeMessage" in jans) == ("Green tea teraz za 9.50 EUR", False)

    await advanced(sessionmaker, timedelta(hours=10), "price_dropped", {"shown"})
    await pushed_in_all(standin, sessionmaker, 3)
    ivan_after = await pass_json(client, cards["ivan"])
    assert notifying_changes(ivan_before, ivan_after) == {"offer"}, "notified at 08:00"
    counted = await stats(client, shop)
    assert counted["journeys"] == {"welcome": 1, "price_dropped": 1}
    assert (counted["suppressed"]["capped"], counted["suppressed"]["quiet_hours"]) == (1, 1)


async def test_a_trial_reminder_days_before_its_end_and_silent_over_the_caps(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    merchant = await session.get_one(Merchant, shop.merchant.id)
    await marketing.update_marketing(session, merchant, {"daily_cap": 0, "weekly_cap": 0})
    await session.commit()
    card = await create_card(session, shop, customer_id="tom", locale="en")
    await card_registered(client, card)
    ends_at = clock.now() + timedelta(days=5)
    trial = {"ends_at": ends_at.isoformat(), "url": "https://shop.example.com/plans"}
    await post_shop_event(client, shop, shop_event("trial.ending", "tom", trial))
    await post_shop_event(client, shop, shop_event("trial.ending", "nobody", trial))
    await advanced(sessionmaker, timedelta(days=1), "trial_ending", {"pending"})
    assert standin.push_count == 0

    await advanced(sessionmaker, timedelta(days=1, minutes=1), "trial_ending", {"shown"})
    await pushed_in_all(standin, sessionmaker, 1)  # the card changed, silently
    document = await pass_json(client, card)
    assert fields(document)["offer"]["value"] == f"Your trial ends {ends_at.date().isoformat()}"
    assert "changeMessage" not in fields(document)["offer"], "capped: silent"
    counted = await stats(client, shop)
    assert counted["suppressed"]["capped"] == 1
    assert counted["events"] == {"no_effect": 1}, "nobody has no card"

    await advanced(sessionmaker, timedelta(days=3), "trial_ending", {"expired"})
    assert "offer" not in fields(await pass_json(client, card)), "gone when the trial ends"
