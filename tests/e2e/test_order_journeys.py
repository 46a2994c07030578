"""The journeys orders drive, end to end: order events through the orders API and the queue
to the pass on the phone and the APNs stand-in, with the clock moved by the test: the
feedback request days after delivery (never for an order undone by then), the refill
reminder (cancelled by buying the product again), the loyalty invitation at the Nth delivered
order (once), the referral link on the back; all within the caps and quiet hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.clock import clock
from services.core.settings import Settings
from services.merchants.journeys import update_journey
from services.merchants.marketing import update_marketing
from services.merchants.models import Merchant
from services.onboarding import Onboarded
from services.passes.journeys.models import JourneyStep
from services.passes.models import Card
from tests.e2e import offers_standin
from tests.e2e.marketing import (
    NOON,
    at_noon,
    card_registered,
    fields,
    notifying_changes,
    pass_json,
    pushed_in_all,
    rows_of,
    settled,
)
from tests.factories import create_merchant, order_event, post_order_event
from tests.waiting import eventually

__all__ = ["at_noon"]

SURVEY = "https://shop.example.com/survey?order={order_id}"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def journey(
    sessionmaker: async_sessionmaker[AsyncSession], shop: Onboarded, name: Any, **changes: Any
) -> None:
    async with sessionmaker() as session:
        merchant = await session.get_one(Merchant, shop.merchant.id)
        await update_journey(session, merchant, name, changes)
        await session.commit()


async def post(
    client: httpx.AsyncClient,
    shop: Onboarded,
    status: str,
    order_id: str = "A-1001",
    *,
    number: str = "1001",
    **order: Any,
) -> None:
    event = order_event(status, order_id=order_id, at=iso(clock.now()), number=number, **order)
    await post_order_event(client, shop.api_key, event)


async def card_on_a_phone(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], shop: Onboarded
) -> Card:
    """Customer c-42's card, issued by their first order and registered on a phone."""
    await post(client, shop, "confirmed")
    await settled(sessionmaker)
    [(card,)] = await rows_of(sessionmaker, select(Card).where(Card.customer_id == "c-42"))
    await card_registered(client, card)
    await settled(sessionmaker)
    return card


async def steps(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[tuple[str, str, str, str | None]]:
    rows = await rows_of(
        sessionmaker,
        select(
            JourneyStep.journey, JourneyStep.key, JourneyStep.state, JourneyStep.reason
        ).order_by(JourneyStep.created_at, JourneyStep.key),
    )
    return [tuple(row) for row in rows]


async def due(sessionmaker: async_sessionmaker[AsyncSession], journey_name: str) -> list[datetime]:
    """When the journey's open steps are due, earliest first."""
    rows = await rows_of(
        sessionmaker,
        select(JourneyStep.due_at)
        .where(JourneyStep.journey == journey_name, JourneyStep.due_at.is_not(None))
        .order_by(JourneyStep.due_at),
    )
    return [at for (at,) in rows]


def titles(document: dict[str, Any]) -> set[str]:
    return {str(f.get("label")) for f in fields(document).values()} | {
        str(f.get("value")) for f in fields(document).values()
    }


async def test_feedback_is_asked_three_days_after_delivery_with_the_survey_link(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await journey(sessionmaker, shop, "feedback", url=SURVEY)
    card = await card_on_a_phone(client, sessionmaker, shop)
    await post(client, shop, "delivered")
    await settled(sessionmaker)
    delivered = await pass_json(client, card)
    pushes = standin.push_count
    assert await due(sessionmaker, "feedback") == [NOON + timedelta(days=3)]

    clock.set(NOON + timedelta(days=2, hours=23))
    await settled(sessionmaker)
    assert standin.push_count == pushes, "not before 3 days"
    clock.set(NOON + timedelta(days=3))
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    asked = await pass_json(client, card)
    assert notifying_changes(delivered, asked) == {"offer"}, "one lock-screen line"
    shown = fields(asked)
    assert shown["offer"]["value"] == "Ako ste spokojní s objednávkou 1001?"
    assert "https://shop.example.com/survey?order=A-1001" in titles(asked)
    assert offers_standin.channel_totals()["journeys.feedback"] == 1
    assert await steps(sessionmaker) == [("feedback", "A-1001", "shown", None)]


async def test_without_a_survey_link_the_card_asks_on_its_own_form_and_a_rating_first_cancels(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """No survey link: the question links to the card's own rating form. An order the customer
    rated before the question was due (here through the shop's API) is not asked about."""
    client = device_client
    shop = await create_merchant(session, settings)
    card = await card_on_a_phone(client, sessionmaker, shop)
    await post(client, shop, "delivered")
    await post(client, shop, "delivered", "A-1002", number="1002")
    await settled(sessionmaker)
    rated = await client.post(
        "/v1/customers/c-42/feedback",
        json={"order_id": "A-1002", "score": 9},
        headers={"Authorization": f"Bearer {shop.api_key}"},
    )
    assert rated.status_code == 201, rated.text
    await settled(sessionmaker)
    assert await due(sessionmaker, "feedback") == [NOON + timedelta(days=3)], "A-1002's ended"

    pushes = standin.push_count
    clock.set(NOON + timedelta(days=3))
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    asked = await pass_json(client, card)
    assert fields(asked)["offer"]["value"] == "Ako ste spokojní s objednávkou 1001?"
    form = f"{settings.base_url()}/c/{card.link_token}/feedback"
    assert form in titles(asked)
    assert await steps(sessionmaker) == [
        ("feedback", "A-1001", "shown", None),
        ("feedback", "A-1002", "cancelled", "rated"),
    ]


async def test_no_feedback_for_an_order_returned_refunded_or_cancelled_by_then(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await journey(sessionmaker, shop, "feedback", url=SURVEY)
    await card_on_a_phone(client, sessionmaker, shop)
    await post(client, shop, "delivered")
    await post(client, shop, "confirmed", "A-1002", number="1002")
    await post(client, shop, "cancelled", "A-1002", number="1002")
    await post(client, shop, "delivered", "A-1003", number="1003")
    await settled(sessionmaker)
    clock.advance(timedelta(days=1))
    await post(client, shop, "returned")
    clock.advance(timedelta(hours=1))
    await post(client, shop, "refunded")
    await settled(sessionmaker)
    pushes = standin.push_count

    clock.set(NOON + timedelta(days=3, hours=1))
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    assert await steps(sessionmaker) == [
        ("feedback", "A-1001", "cancelled", "returned"),
        ("feedback", "A-1003", "shown", None),
    ], "the cancelled order was never delivered, the returned one is not asked about"
    assert offers_standin.channel_totals()["journeys.feedback"] == 1


async def test_a_refill_reminder_comes_after_its_days_unless_bought_again(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await journey(sessionmaker, shop, "feedback", enabled=False)  # asked after every delivery
    await journey(sessionmaker, shop, "refill", products={"filters": 60})
    card = await card_on_a_phone(client, sessionmaker, shop)
    items = [
        {"name": "Green tea", "product_id": "tea-green", "refill_after_days": 30},
        {"name": "Coffee beans", "product_id": "coffee", "refill_after_days": 20},
        {"name": "Water filters", "product_id": "filters"},
        {"name": "Tea kettle", "product_id": "kettle"},
    ]
    await post(client, shop, "delivered", items=items)
    await settled(sessionmaker)
    # Ten days later the customer orders coffee again: its reminder is not needed.
    clock.set(NOON + timedelta(days=10))
    await post(client, shop, "placed", "A-1002", number="1002", items=[items[1]])
    await settled(sessionmaker)
    before = await pass_json(client, card)
    pushes = standin.push_count
    assert await due(sessionmaker, "refill") == [
        NOON + timedelta(days=30),
        NOON + timedelta(days=60),
    ], "the tea's and the filters'; the coffee's was cancelled"

    clock.set(NOON + timedelta(days=29, hours=23))
    await settled(sessionmaker)
    assert standin.push_count == pushes, "nothing before the tea's 30 days (coffee bought again)"
    clock.set(NOON + timedelta(days=30))
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    reminded = await pass_json(client, card)
    assert notifying_changes(before, reminded) == {"offer"}
    assert fields(reminded)["offer"]["value"] == "Dochádza vám Green tea?"
    [(version,)] = await rows_of(sessionmaker, select(Card.version).where(Card.id == card.id))
    clock.set(NOON + timedelta(days=60))
    # The tea's reminder leaves the card (it was due to at day 44) in the version the filters'
    # comes in: one push (two versions could wake the phone twice), carrying the filters' line.
    await pushed_in_all(standin, sessionmaker, pushes + 2)
    assert await rows_of(sessionmaker, select(Card.version).where(Card.id == card.id)) == [
        (version + 1,)
    ]
    filters = await pass_json(client, card)
    assert fields(filters)["offer"]["value"] == "Dochádza vám Water filters?"
    assert notifying_changes(reminded, filters) == {"offer"}
    states = {
        key.split()[0]: (state, reason)
        for journey_, key, state, reason in await steps(sessionmaker)
        if journey_ == "refill"
    }
    assert states == {
        "tea-green": ("expired", None),
        "coffee": ("cancelled", "bought_again"),
        "filters": ("shown", None),
    }, "the kettle has no follow-up"
    assert offers_standin.channel_totals()["journeys.refill"] == 2


async def test_the_loyalty_invitation_comes_once_after_the_third_delivered_order(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await journey(sessionmaker, shop, "feedback", enabled=False)  # asked after every delivery
    club = "https://shop.example.com/club/{customer_id}"
    await journey(sessionmaker, shop, "loyalty", enabled=True, url=club)
    card = await card_on_a_phone(client, sessionmaker, shop)
    await post(client, shop, "delivered")  # A-1001, the card's first order
    await post(client, shop, "delivered", "A-1002", number="1002")
    await post(client, shop, "returned", "A-1002", number="1002")  # delivered all the same
    await post(client, shop, "cancelled", "A-1003", number="1003")  # never delivered
    await settled(sessionmaker)
    assert await steps(sessionmaker) == [], "two delivered orders so far"

    clock.advance(timedelta(days=1))
    await post(client, shop, "picked_up", "A-1004", number="1004")
    await settled(sessionmaker)
    before = await pass_json(client, card)
    pushes = standin.push_count
    # 15 minutes after the status's notification, the invitation notifies.
    clock.advance(timedelta(minutes=15))
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    invited = await pass_json(client, card)
    assert notifying_changes(before, invited) == {"offer"}
    assert fields(invited)["offer"]["value"] == "Ďakujeme, že ste s nami!"
    assert "https://shop.example.com/club/c-42" in titles(invited)

    # The fourth delivered order, and the fifth: never invited again.
    for number in ("1005", "1006"):
        clock.advance(timedelta(days=1))
        await post(client, shop, "delivered", f"A-{number}", number=number)
    await settled(sessionmaker)
    clock.advance(timedelta(hours=1))
    await settled(sessionmaker)
    assert await steps(sessionmaker) == [("loyalty", "invitation", "shown", None)]
    assert offers_standin.channel_totals()["journeys.loyalty"] == 1


async def test_the_referral_link_is_on_the_back_while_the_merchant_has_one(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    card = await card_on_a_phone(client, sessionmaker, shop)
    assert "link_referral" not in fields(await pass_json(client, card))
    referral = "https://shop.example.com/invite/{customer_id}?from=card"
    await journey(sessionmaker, shop, "referral", enabled=True, url=referral)
    await post(client, shop, "shipped")
    await settled(sessionmaker)
    link = fields(await pass_json(client, card))["link_referral"]
    assert (link["label"], link["value"]) == (
        "back.referral",
        "https://shop.example.com/invite/c-42?from=card",
    )
    await journey(sessionmaker, shop, "referral", enabled=False)
    await post(client, shop, "delivered")
    await settled(sessionmaker)
    assert "link_referral" not in fields(await pass_json(client, card))


async def test_order_journeys_keep_to_the_caps_and_quiet_hours(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    await journey(sessionmaker, shop, "feedback", url=SURVEY)
    async with sessionmaker() as own:
        merchant = await own.get_one(Merchant, shop.merchant.id)
        await update_marketing(own, merchant, {"weekly_cap": 1})
        await own.commit()
    card = await card_on_a_phone(client, sessionmaker, shop)
    # Delivered at 22:00: the feedback request is due 3 days later at 22:00, in quiet hours,
    # and the tea's refill reminder a day after that, at 22:00 again.
    clock.set(NOON + timedelta(hours=10))
    tea = {"name": "Green tea", "product_id": "tea-green", "refill_after_days": 4}
    await post(client, shop, "delivered", items=[tea])
    await settled(sessionmaker)
    before = await pass_json(client, card)
    pushes = standin.push_count

    clock.set(NOON + timedelta(days=3, hours=10))
    await eventually(lambda: step_is(sessionmaker, "feedback", "deferred"))
    await settled(sessionmaker)
    assert standin.push_count == pushes, "quiet hours: the request waits for the morning"
    clock.set(NOON + timedelta(days=3, hours=20))  # 08:00
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    asked = await pass_json(client, card)
    assert notifying_changes(before, asked) == {"offer"}
    assert fields(asked)["offer"]["value"] == "Ako ste spokojní s objednávkou 1001?"

    # The reminder, due at 22:00 the next day, cannot notify anyway: the week's one marketing
    # notification went to the feedback request. So it is shown at once, silently.
    clock.set(NOON + timedelta(days=4, hours=10))
    await pushed_in_all(standin, sessionmaker, pushes + 2)
    reminded = await pass_json(client, card)
    assert fields(reminded)["offer"]["value"] == "Dochádza vám Green tea?"
    assert notifying_changes(asked, reminded) == set(), "capped: no lock-screen line"
    counted = offers_standin.channel_totals()
    assert (counted["journeys.feedback"], counted.get("journeys.refill", 0)) == (1, 0)
    assert (counted["suppressed.quiet_hours"], counted["suppressed.capped"]) == (1, 1)


async def step_is(
    sessionmaker: async_sessionmaker[AsyncSession], journey_name: str, state: str
) -> bool:
    return any(j == journey_name and s == state for j, _, s, _ in await steps(sessionmaker))
