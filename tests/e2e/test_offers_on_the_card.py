"""Offers on the card end to end: a campaign's audience through the queue to the pass on the
phone and the APNs stand-in, with the clock moved by the test (caps, quiet hours, expiry)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.contracts.messages import CardCriteria, MarketingConsentSet, OfferWithdrawn
from services.core.clock import clock
from services.core.settings import Settings
from services.passes.marketing import offers
from services.passes.marketing.models import CardOffer
from services.passes.marketing.slot import offer_key
from tests.e2e import offers_standin
from tests.e2e.marketing import (
    announced,
    at_noon,
    audience,
    card_on_phone,
    card_registered,
    fields,
    nothing_held,
    notifying_changes,
    offer,
    ordered_card,
    pass_json,
    pushed_in_all,
    reloaded,
    rows_of,
    send,
    set_zones,
    settled,
)
from tests.factories import (
    create_card,
    create_merchant,
    order_event,
    pass_auth,
    post_order_event,
    registration_url,
)
from tests.waiting import eventually

__all__ = ["at_noon"]


async def test_an_offer_reaches_each_phone_once_with_one_lock_screen_line(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    jana, _ = await card_on_phone(client, session, shop, "jana")
    petr, _ = await card_on_phone(client, session, shop, "petr")
    await create_card(session, shop, customer_id="nowhere")  # on no device
    before = await pass_json(client, jana)
    campaign = uuid.uuid4()
    tea = offer()

    await send(
        sessionmaker,
        audience(shop, tea, ["jana", "petr", "nowhere", "unknown"], campaign_id=campaign),
    )
    await settled(sessionmaker)

    assert standin.push_count == 2, "one push per phone"
    after = await pass_json(client, jana)
    assert notifying_changes(before, after) == {"offer"}, "exactly one field with a message"
    shown = fields(after)
    assert shown["offer"]["value"] == "10 % off tea"
    assert shown["offer"]["changeMessage"] == "offer.change"
    assert shown["offer"] in after["storeCard"]["auxiliaryFields"], "the front has room"
    details = shown[f"offer_{offer_key('tea-10')}"]
    assert (details["label"], details["value"]) == ("10 % off tea", "Every tea, until Sunday.")
    assert any(f["value"] == "TEA10" and f["label"] == "back.coupon" for f in shown.values())
    assert any(f["value"] == "https://shop.example.com/tea" for f in shown.values())
    assert shown["no_offers"]["value"].endswith(f"/c/{jana.link_token}/marketing")
    assert after["barcodes"][0]["message"] == "TEA10", "the cashier scans the coupon"
    totals = offers_standin.campaign_totals()
    assert (totals["targeted"], totals["updated"], totals["notified"]) == (4, 2, 2)
    assert totals["skipped"] == {"not_on_a_device": 1, "no_card": 1}
    assert [p.parts for p in offers_standin.progress] == [1], "one progress message per part"
    counted = offers_standin.channel_totals()
    assert (counted["cards.issued"], counted["apple.registered"]) == (3, 2)
    assert counted["notifications.marketing"] == 2
    assert len(offers_standin.counted) == 6, (
        "one per transaction: 3 issues, 2 registrations, 1 part"
    )

    # The same part again (redelivered, or republished after a crash): nothing shows twice.
    await send(
        sessionmaker,
        audience(shop, tea, ["jana", "petr", "nowhere", "unknown"], campaign_id=campaign),
    )
    await settled(sessionmaker)
    assert standin.push_count == 2
    assert len(offers_standin.progress) == 1
    [(rows,)] = await rows_of(sessionmaker, select(func.count()).select_from(CardOffer))
    assert rows == 3, "one row per (card, offer)"
    assert (await reloaded(sessionmaker, petr)).version == petr.version + 1


async def test_over_the_caps_the_card_changes_silently_and_statuses_still_notify(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    card = await ordered_card(client, sessionmaker, shop)
    await card_registered(client, card)
    pass_json_before = await pass_json(client, card)

    campaign = uuid.uuid4()
    await send(sessionmaker, audience(shop, offer("day-1"), ["c-42"], campaign_id=campaign))
    await settled(sessionmaker)
    first = await pass_json(client, card)
    assert notifying_changes(pass_json_before, first) == {"offer"}

    # Two hours later, a second offer the same day: shown, silently.
    clock.advance(timedelta(hours=2))
    second_campaign = uuid.uuid4()
    await send(
        sessionmaker,
        audience(
            shop, offer("day-1b", title="Free shipping"), ["c-42"], campaign_id=second_campaign
        ),
    )
    await settled(sessionmaker)
    second = await pass_json(client, card)
    assert fields(second)["offer"]["value"] == "Free shipping", "the newest on the front"
    assert notifying_changes(first, second) == set(), "capped: no field with a message changed"
    assert "10 % off tea" in {f["label"] for f in fields(second).values()}, "both on the back"
    capped = [p for p in offers_standin.progress if p.campaign_id == second_campaign]
    assert [(p.updated, p.notified, p.silent) for p in capped] == [(1, 0, {"capped": 1})]
    pushes = standin.push_count

    # An order status right after the capped offer still notifies.
    await post_order_event(client, shop.api_key, order_event("shipped", at="2026-11-23T12:00:00Z"))
    await settled(sessionmaker)
    shipped = await pass_json(client, card)
    assert notifying_changes(second, shipped) == {"status"}
    assert standin.push_count == pushes + 1
    kinds = [p.get("notification") for p in await announced(sessionmaker, card)]
    assert kinds[-3:] == ["marketing", None, "status"]

    # The week: day 2 and 3 notify (3 in 7 days), day 4 is capped although a new day.
    outcomes = []
    for day in (1, 2, 3):
        clock.set(at_noon + timedelta(days=day))
        campaign = uuid.uuid4()
        await send(
            sessionmaker, audience(shop, offer(f"day-{day + 1}"), ["c-42"], campaign_id=campaign)
        )
        await settled(sessionmaker)
        [progress] = [p for p in offers_standin.progress if p.campaign_id == campaign]
        outcomes.append((progress.notified, progress.silent))
    assert outcomes == [(1, {}), (1, {}), (0, {"capped": 1})]
    counted = offers_standin.channel_totals()
    assert (counted["notifications.marketing"], counted["suppressed.capped"]) == (3, 2)
    assert counted["notifications.status"] == 1


async def test_quiet_hours_hold_the_offer_until_morning_in_the_customers_zone(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    tokyo, _ = await card_on_phone(client, session, shop, "tokyo")
    await card_on_phone(client, session, shop, "prague")
    await set_zones(session, {"tokyo": "Asia/Tokyo", "prague": "Europe/Prague"})
    # 13:30 UTC: 22:30 in Tokyo (quiet), 14:30 in Prague.
    clock.set(datetime(2026, 12, 1, 13, 30, tzinfo=UTC))
    before = await pass_json(client, tokyo)
    campaign = uuid.uuid4()
    await send(sessionmaker, audience(shop, offer(), ["tokyo", "prague"], campaign_id=campaign))
    await settled(sessionmaker)
    assert standin.push_count == 1, "Prague now; Tokyo sleeps"
    assert "offer" not in fields(await pass_json(client, tokyo)), "the card waits too"
    totals = offers_standin.campaign_totals()
    assert (totals["notified"], totals["deferred"]) == (1, 1)

    # 07:59 in Tokyo: still held.
    clock.set(datetime(2026, 12, 1, 22, 59, tzinfo=UTC))
    await settled(sessionmaker)
    assert standin.push_count == 1
    # 08:00 in Tokyo: the job sends it, with its lock-screen line.
    clock.set(datetime(2026, 12, 1, 23, 0, tzinfo=UTC))
    await pushed_in_all(standin, sessionmaker, 2)
    after = await pass_json(client, tokyo)
    assert notifying_changes(before, after) == {"offer"}
    totals = offers_standin.campaign_totals()
    assert (totals["notified"], totals["deferred"], totals["updated"]) == (2, 0, 2)


async def test_an_offer_leaves_quietly_when_it_expires_is_redeemed_or_cancelled(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    jana, _ = await card_on_phone(client, session, shop, "jana")
    petr, _ = await card_on_phone(client, session, shop, "petr")
    short = offer(
        "short", title="Today only", coupon_code=None, valid_until=at_noon + timedelta(hours=6)
    )
    await send(sessionmaker, audience(shop, short, ["jana", "petr"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    clock.advance(timedelta(hours=1))
    tea = offer("tea")
    await send(sessionmaker, audience(shop, tea, ["jana", "petr"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    with_both = await pass_json(client, jana)
    assert fields(with_both)["offer"]["value"] == "10 % off tea"
    assert "Today only" in {f["label"] for f in fields(with_both).values()}
    pushes = standin.push_count

    # Past "Today only"'s end: the job takes it off both cards, quietly.
    clock.advance(timedelta(hours=5, minutes=1))
    await pushed_in_all(standin, sessionmaker, pushes + 2)
    expired = await pass_json(client, jana)
    assert "Today only" not in {f["label"] for f in fields(expired).values()}
    assert notifying_changes(with_both, expired) == set()

    # Jana redeems the tea coupon: it leaves her card only, quietly; the barcode is hers again.
    await send(
        sessionmaker,
        OfferWithdrawn(
            merchant_id=shop.merchant.id, offer_id="tea", reason="redeemed", customer_id="jana"
        ),
    )
    await pushed_in_all(standin, sessionmaker, pushes + 3)
    redeemed = await pass_json(client, jana)
    assert "offer" not in fields(redeemed)
    assert redeemed["barcodes"][0]["message"] == jana.serial_number
    assert notifying_changes(expired, redeemed) == set()
    assert fields(await pass_json(client, petr))["offer"]["value"] == "10 % off tea"

    # The shop cancels it: it leaves every card.
    await send(
        sessionmaker,
        OfferWithdrawn(merchant_id=shop.merchant.id, offer_id="tea", reason="cancelled"),
    )
    await pushed_in_all(standin, sessionmaker, pushes + 4)
    assert "offer" not in fields(await pass_json(client, petr))
    states = (
        await session.execute(select(CardOffer.offer_id, CardOffer.state, CardOffer.reason))
    ).all()
    assert sorted(states) == [
        ("short", "expired", "expired"),
        ("short", "expired", "expired"),
        ("tea", "withdrawn", "cancelled"),
        ("tea", "withdrawn", "redeemed"),
    ]


async def test_card_criteria_pick_the_cards(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A segment of card criteria only: passes pages through the merchant's cards itself."""
    client = device_client
    shop = await create_merchant(session, settings)
    await card_on_phone(client, session, shop, "sk-phone")
    await create_card(session, shop, customer_id="sk-nowhere")
    await create_card(session, shop, customer_id="de-phone", locale="de")
    await send(
        sessionmaker,
        audience(
            shop,
            offer(),
            None,
            campaign_id=uuid.uuid4(),
            parts=None,
            cards=CardCriteria(locales=["sk"], has_wallet="apple"),
        ),
    )
    await settled(sessionmaker)
    assert standin.push_count == 1
    totals = offers_standin.campaign_totals()
    assert (totals["targeted"], totals["notified"]) == (1, 1)
    assert [p.parts for p in offers_standin.progress] == [1]


async def test_a_campaign_restarted_after_a_crash_shows_and_notifies_nothing_twice(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Parts 1 and 2 of 3 were applied when the sender died; restarted, it sends all three
    again (new messages, so the inbox does not know them)."""
    client = device_client
    shop = await create_merchant(session, settings)
    customers = [f"c-{n}" for n in range(6)]
    for customer in customers:
        await card_on_phone(client, session, shop, customer)
    campaign, tea = uuid.uuid4(), offer()
    parts = [
        audience(shop, tea, customers[i : i + 2], campaign_id=campaign, part=i // 2 + 1, parts=None)
        for i in range(0, 6, 2)
    ]
    parts[-1] = parts[-1].model_copy(update={"parts": 3})
    await send(sessionmaker, parts[0], parts[1])
    await settled(sessionmaker)
    assert standin.push_count == 4
    await send(sessionmaker, *parts)
    await settled(sessionmaker)
    assert standin.push_count == 6, "only part 3's phones, once each"
    assert sorted(p.part for p in offers_standin.progress) == [1, 2, 3]
    totals = offers_standin.campaign_totals()
    assert (totals["targeted"], totals["notified"]) == (6, 6)


async def test_every_card_of_the_merchant_a_page_at_a_time(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without customer ids, passes takes a page of cards per transaction and publishes the
    rest as the next part; the last part says how many there were."""
    monkeypatch.setattr(offers, "PAGE", 2)
    client = device_client
    shop = await create_merchant(session, settings)
    for n in range(5):
        await card_on_phone(client, session, shop, f"c-{n}")
    await send(sessionmaker, audience(shop, offer(), None, campaign_id=uuid.uuid4(), parts=None))
    await settled(sessionmaker)
    assert standin.push_count == 5
    assert sorted((p.part, p.parts, p.notified) for p in offers_standin.progress) == [
        (1, None, 2),
        (2, None, 2),
        (3, 3, 1),
    ]


async def test_an_offer_right_after_a_status_change_waits_so_the_status_line_stays(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A phone that fetches a status version and an offer version at once would see two
    changed fields with messages (Wallet's generic line): the offer waits 15 minutes."""
    client = device_client
    shop = await create_merchant(session, settings)
    card = await ordered_card(client, sessionmaker, shop)
    await card_registered(client, card)
    before = await pass_json(client, card)
    await post_order_event(client, shop.api_key, order_event("shipped", at="2026-11-23T12:00:00Z"))
    await settled(sessionmaker)
    clock.advance(timedelta(minutes=1))
    campaign = uuid.uuid4()
    await send(sessionmaker, audience(shop, offer(), ["c-42"], campaign_id=campaign))
    await settled(sessionmaker)
    assert standin.push_count == 1, "the status only"
    shipped = await pass_json(client, card)
    assert notifying_changes(before, shipped) == {"status"}
    assert offers_standin.campaign_totals()["deferred"] == 1
    clock.advance(timedelta(minutes=14))
    await pushed_in_all(standin, sessionmaker, 2)
    assert notifying_changes(shipped, await pass_json(client, card)) == {"offer"}
    totals = offers_standin.campaign_totals()
    assert (totals["deferred"], totals["notified"]) == (0, 1)
    assert offers_standin.channel_totals()["suppressed.quiet_hours"] == 0


async def test_two_offers_held_overnight_make_one_lock_screen_line_in_the_morning(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    card, _ = await card_on_phone(client, session, shop, "tokyo")
    await set_zones(session, {"tokyo": "Asia/Tokyo"})
    clock.set(datetime(2026, 12, 1, 13, 30, tzinfo=UTC))  # 22:30 in Tokyo
    await send(sessionmaker, audience(shop, offer("first"), ["tokyo"], campaign_id=uuid.uuid4()))
    clock.advance(timedelta(minutes=30))
    second = offer("second", title="Free shipping")
    await send(sessionmaker, audience(shop, second, ["tokyo"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    night = await pass_json(client, card)
    assert standin.push_count == 0
    clock.set(datetime(2026, 12, 1, 23, 0, tzinfo=UTC))  # 08:00 in Tokyo
    await eventually(lambda: nothing_held(sessionmaker))
    await settled(sessionmaker)
    morning = await pass_json(client, card)
    assert notifying_changes(night, morning) == {"offer"}
    assert fields(morning)["offer"]["value"] == "10 % off tea", "the one that notifies in front"
    assert "Free shipping" in {f["label"] for f in fields(morning).values()}
    totals = offers_standin.campaign_totals()
    assert (totals["deferred"], totals["notified"], totals["silent"]) == (0, 1, {"capped": 1})


async def test_a_held_offer_is_asked_again_in_the_morning_and_a_card_off_its_phone_skipped(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    names = ("stays", "opts-out", "leaves")
    cards = {name: (await card_on_phone(client, session, shop, name))[0] for name in names}
    await set_zones(session, dict.fromkeys(names, "Asia/Tokyo"))
    clock.set(datetime(2026, 12, 1, 13, 30, tzinfo=UTC))  # 22:30 in Tokyo
    await send(sessionmaker, audience(shop, offer(), list(names), campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    assert standin.push_count == 0
    assert offers_standin.campaign_totals()["deferred"] == 3

    # Overnight one customer says no to offers and another takes the card off the phone.
    consent = MarketingConsentSet(
        merchant_id=shop.merchant.id, customer_id="opts-out", consent=False, at=clock.now()
    )
    await send(sessionmaker, consent)
    leaves = cards["leaves"]
    response = await client.delete(
        registration_url(leaves, "phone-leaves"), headers=pass_auth(leaves)
    )
    assert response.status_code == 200
    await settled(sessionmaker)

    clock.set(datetime(2026, 12, 1, 23, 0, tzinfo=UTC))  # 08:00 in Tokyo
    await eventually(lambda: nothing_held(sessionmaker))
    await pushed_in_all(standin, sessionmaker, 1)
    totals = offers_standin.campaign_totals()
    assert (totals["deferred"], totals["updated"], totals["notified"]) == (0, 1, 1)
    assert totals["skipped"] == {"opted_out": 1, "not_on_a_device": 1}
    assert (await reloaded(sessionmaker, leaves)).version == leaves.version, "left as it was"

    # Back on a phone while the offer is still valid: it shows, silently, and is counted.
    before = await pass_json(client, leaves)
    await card_registered(client, leaves)
    await pushed_in_all(standin, sessionmaker, 2)
    after = await pass_json(client, leaves)
    assert fields(after)["offer"]["value"] == "10 % off tea"
    assert notifying_changes(before, after) == set(), "old news: no lock-screen line"
    totals = offers_standin.campaign_totals()
    assert (totals["updated"], totals["notified"]) == (2, 1)
    assert +totals["skipped"] == {"opted_out": 1}
    assert totals["silent"] == {"later_on_a_device": 1}


async def test_a_card_landing_on_a_device_shows_the_offers_it_missed_that_still_hold(
    at_noon: datetime,  # first: the clock is set before the services start
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    card = await create_card(session, shop, customer_id="later")  # on no device yet
    offers_now = (
        offer("tea-10"),
        offer("cancelled", title="Free shipping", coupon_code=None),
        offer("today", title="Today only", valid_until=clock.now() + timedelta(hours=2)),
    )
    for view in offers_now:
        await send(sessionmaker, audience(shop, view, ["later"], campaign_id=uuid.uuid4()))
    await settled(sessionmaker)
    assert +offers_standin.campaign_totals()["skipped"] == {"not_on_a_device": 3}
    withdrawn = OfferWithdrawn(
        merchant_id=shop.merchant.id, offer_id="cancelled", reason="cancelled"
    )
    await send(sessionmaker, withdrawn)
    await settled(sessionmaker)
    clock.advance(timedelta(hours=3))  # "Today only" is over

    before = await pass_json(client, card)
    await card_registered(client, card)
    await pushed_in_all(standin, sessionmaker, 1)
    after = await pass_json(client, card)
    shown = {f["value"] for f in fields(after).values()}
    assert "10 % off tea" in shown
    assert not {"Free shipping", "Today only"} & shown, "cancelled and expired offers stay off"
    assert notifying_changes(before, after) == set()
    totals = offers_standin.campaign_totals()
    assert +totals["skipped"] == {"not_on_a_device": 2}
    assert (totals["updated"], totals["notified"]) == (1, 0)
    assert totals["silent"] == {"later_on_a_device": 1}
    states = select(CardOffer.offer_id, CardOffer.state).order_by(CardOffer.offer_id)
    assert await rows_of(sessionmaker, states) == [
        ("cancelled", "withdrawn"),
        ("tea-10", "shown"),
        ("today", "skipped"),
    ]
