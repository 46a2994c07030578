"""The offers API contract: who may call each route, idempotency, bad input, what is sent."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import (
    CampaignAudience,
    CampaignProgress,
    CampaignStarted,
    ChannelCounted,
    MarketingConsentSet,
    OfferWithdrawn,
)
from services.core.clock import clock
from services.core.queue import publish
from services.merchants.service import rotate_signing_secret
from services.offers.models import Campaign, Offer
from services.onboarding import Onboarded
from tests.factories import OFFERS, api_auth, offer_body
from tests.offers.conftest import NOW, published
from tests.waiting import eventually

ANONYMOUS: dict[str, str] = {}


async def create(client: httpx.AsyncClient, shop: Onboarded, **fields: Any) -> dict[str, Any]:
    response = await client.post(OFFERS, json=offer_body(**fields), headers=api_auth(shop))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def campaign_of(
    client: httpx.AsyncClient, shop: Onboarded, offer: dict[str, Any]
) -> dict[str, Any]:
    response = await client.get(f"/v1/campaigns/{offer['campaign_id']}", headers=api_auth(shop))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_offer_for_customer_ids_is_sent_to_passes_in_parts_of_500(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = [f"c-{n:04}" for n in range(1203)]
    offer = await create(client, shop, target={"customer_ids": [*ids, "c-0001"]})
    assert offer["duplicate"] is False
    assert offer["state"] == "active"
    assert offer["target"] == {"customers": 1203, "segment": None}
    assert offer["redemptions"] == 0

    parts = await published(sessionmaker, CampaignAudience)
    assert [(p.part, p.parts, len(p.customer_ids or [])) for p in parts] == [
        (1, None, 500),
        (2, None, 500),
        (3, 3, 203),
    ]
    assert [c for p in parts for c in p.customer_ids or []] == ids
    assert {str(p.campaign_id) for p in parts} == {offer["campaign_id"]}
    assert parts[0].offer.id == offer["id"]
    assert parts[0].offer.coupon_code == "TEA10"
    campaign = await campaign_of(client, shop, offer)
    assert (campaign["state"], campaign["parts"], campaign["parts_done"]) == ("running", 3, 0)
    assert campaign["offer_id"] == offer["id"]


async def test_the_same_id_and_body_answers_the_same_another_body_is_409(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = offer_body(offer_id="tea-week")
    first = await client.post(OFFERS, json=body, headers=api_auth(shop))
    again = await client.post(OFFERS, json=body, headers=api_auth(shop))
    assert first.status_code == again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    changed = await client.post(
        OFFERS, json={**body, "title": "20 % off tea"}, headers=api_auth(shop)
    )
    assert changed.status_code == 409
    assert "different body" in changed.json()["message"]
    # One offer, one campaign, its audience published once.
    assert len(await published(sessionmaker, CampaignAudience)) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Campaign)) == 1


async def test_the_same_offer_posted_twice_at_once_is_made_once(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = offer_body(offer_id="at-once")
    answers = await asyncio.gather(
        *(client.post(OFFERS, json=body, headers=api_auth(shop)) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [202] * 4
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True]
    assert len({a.json()["campaign_id"] for a in answers}) == 1
    assert len(await published(sessionmaker, CampaignAudience)) == 1


async def test_the_same_offer_id_is_anothers_merchants_own(
    client: httpx.AsyncClient, shop: Onboarded, other: Onboarded
) -> None:
    mine = await create(client, shop, offer_id="tea-week")
    response = await client.post(
        OFFERS, json=offer_body(offer_id="tea-week"), headers=api_auth(other)
    )
    assert response.status_code == 202
    assert response.json()["duplicate"] is False
    assert response.json()["campaign_id"] != mine["campaign_id"]


@pytest.mark.parametrize(
    ("fields", "path", "says"),
    [
        ({"valid_until": "2026-12-01T11:59:00Z"}, "body.valid_until", "future"),
        ({"valid_until": "2028-12-01T11:59:00Z"}, "body.valid_until", "a year"),
        (
            {"valid_from": "2026-12-31T23:30:00Z", "valid_until": "2026-12-31T23:00:00Z"},
            "body",
            "valid_from must come before",
        ),
        ({"target": {"segment": {"min_orders": 2, "vip": True}}}, "body.target.segment.vip", ""),
        ({"target": {"segment": {}}}, "body.target.segment", "at least one criterion"),
        ({"target": {"segment": {"has_wallet": "nokia"}}}, "body.target.segment.has_wallet", ""),
        (
            {"target": {"segment": {"min_total_spent": {"amount": "10", "currency": "eur"}}}},
            "body.target.segment.min_total_spent.currency",
            "",
        ),
        ({"target": {"customer_ids": ["c-1"], "segment": {"min_orders": 1}}}, "body.target", ""),
        ({"target": {"customer_ids": []}}, "body.target.customer_ids", ""),
        ({"target": {"customer_ids": ["with space"]}}, "body.target.customer_ids.0", ""),
        ({"coupon_code": "X" * 65}, "body.coupon_code", ""),
        ({"coupon_code": "TEA\u200b10"}, "body.coupon_code", ""),
        ({"coupon_code": "TEA\n10"}, "body.coupon_code", ""),
        ({"title": "Tea\x00"}, "body.title", "control characters"),
        ({"title": "T" * 61}, "body.title", ""),
        ({"texts": {"klingon!": {"title": "t", "text": "t"}}}, "body.texts.klingon!.[key]", ""),
        ({"texts": {"sk": {"title": "Čaj"}}}, "body.texts.sk.text", ""),
        ({"url": "javascript:alert(1)"}, "body.url", ""),
        ({"notfy": False}, "body.notfy", ""),
    ],
)
async def test_bad_input_is_422_with_the_field_path_and_creates_nothing(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
    fields: dict[str, Any],
    path: str,
    says: str,
) -> None:
    response = await client.post(OFFERS, json=offer_body(**fields), headers=api_auth(shop))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert path in [e["path"] for e in errors], errors
    assert says in " ".join(e["message"] for e in errors)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Offer)) == 0


async def test_more_than_10000_customer_ids_is_422_saying_how_to_send_more(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    ids = [f"c-{n}" for n in range(10_001)]
    response = await client.post(
        OFFERS, json=offer_body({"customer_ids": ids}), headers=api_auth(shop)
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["path"] == "body.target.customer_ids"
    assert "POST /v1/campaigns/{campaign_id}/audience" in error["message"]


async def test_10000_long_customer_ids_fit_in_one_call(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    """Bodies of the two audience routes may be larger than the process's 256 KiB."""
    ids = [f"customer-{n:06}-{'x' * 180}" for n in range(10_000)]
    response = await client.post(
        OFFERS, json=offer_body({"customer_ids": ids}), headers=api_auth(shop)
    )
    assert response.status_code == 202, response.text[:300]
    assert response.json()["target"]["customers"] == 10_000
    too_many = [*ids, "one-more"]
    refused = await client.post(
        OFFERS, json=offer_body({"customer_ids": too_many}), headers=api_auth(shop)
    )
    assert refused.status_code == 422
    huge = offer_body({"customer_ids": ids}, text="x" * 800_000)
    assert (await client.post(OFFERS, json=huge, headers=api_auth(shop))).status_code == 413
    elsewhere = await client.post(
        "/v1/customers/c-1/marketing",
        json={"consent": True, "padding": "x" * 300_000},
        headers=api_auth(shop),
    )
    assert elsewhere.status_code == 413


async def test_more_customers_join_a_campaign_in_further_parts(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    offer = await create(client, shop, target={"customer_ids": ["c-1"]})
    response = await client.post(
        f"/v1/campaigns/{offer['campaign_id']}/audience",
        json={"customer_ids": [f"d-{n}" for n in range(600)]},
        headers=api_auth(shop),
    )
    assert response.status_code == 202, response.text
    assert response.json()["parts"] == 3
    parts = await published(sessionmaker, CampaignAudience)
    assert [(p.part, p.parts, len(p.customer_ids or [])) for p in parts] == [
        (1, 1, 1),
        (2, None, 500),
        (3, 3, 100),
    ]
    too_many = await client.post(
        f"/v1/campaigns/{offer['campaign_id']}/audience",
        json={"customer_ids": [f"d-{n}" for n in range(10_001)]},
        headers=api_auth(shop),
    )
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["path"] == "body.customer_ids"


async def test_a_segment_campaign_cannot_take_customer_ids(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    offer = await create(client, shop, target={"segment": {"has_wallet": "any"}})
    response = await client.post(
        f"/v1/campaigns/{offer['campaign_id']}/audience",
        json={"customer_ids": ["c-1"]},
        headers=api_auth(shop),
    )
    assert response.status_code == 409


async def test_a_segment_of_card_criteria_only_goes_to_passes_for_every_card(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    segment = {"locales": ["sk", "cs-CZ"], "has_wallet": "apple"}
    offer = await create(client, shop, target={"segment": segment})
    assert offer["target"]["segment"] == {"locales": ["sk", "cs"], "has_wallet": "apple"}
    (audience,) = await published(sessionmaker, CampaignAudience)
    assert audience.customer_ids is None
    assert (audience.part, audience.parts) == (1, None)
    assert audience.cards.locales == ["sk", "cs"]
    assert audience.cards.has_wallet == "apple"
    assert await published(sessionmaker, CampaignStarted) == []


async def test_a_segment_with_order_criteria_goes_to_orders(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    segment = {
        "min_orders": 2,
        "min_total_spent": {"amount": "100.00", "currency": "EUR"},
        "has_wallet": "any",
    }
    await create(client, shop, target={"segment": segment})
    (started, *_) = await published(sessionmaker, CampaignStarted)
    assert started.orders.min_orders == 2
    assert started.orders.min_total_spent is not None
    assert str(started.orders.min_total_spent.amount) == "100.00"
    assert started.cards.has_wallet == "any"
    assert started.as_of == NOW
    assert (started.part, started.after) == (1, None)


async def test_a_campaign_from_valid_from_on_starts_when_the_clock_gets_there(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    offer = await create(client, shop, valid_from="2026-12-05T08:00:00Z")
    assert offer["state"] == "scheduled"
    assert (await campaign_of(client, shop, offer))["state"] == "scheduled"
    more = await client.post(
        f"/v1/campaigns/{offer['campaign_id']}/audience",
        json={"customer_ids": ["c-3"]},
        headers=api_auth(shop),
    )
    assert more.status_code == 202
    clock.advance(timedelta(days=3))
    assert (await campaign_of(client, shop, offer))["state"] == "scheduled"
    assert await published(sessionmaker, CampaignAudience) == []

    clock.set(NOW.replace(day=5, hour=8))

    async def running() -> bool:
        return (await campaign_of(client, shop, offer))["state"] == "running"

    await eventually(running)
    (audience,) = await published(sessionmaker, CampaignAudience)
    assert audience.customer_ids == ["c-1", "c-2", "c-3"]
    assert (await campaign_of(client, shop, offer))["started_at"] == "2026-12-05T08:00:00Z"


async def progress(
    session: AsyncSession, shop: Onboarded, offer: dict[str, Any], **counts: Any
) -> None:
    """What passes reports of a part, as its consumer will (published and committed)."""
    publish(
        session,
        CampaignProgress(campaign_id=offer["campaign_id"], merchant_id=shop.merchant.id, **counts),
        key=offer["campaign_id"],
    )
    await session.commit()


async def test_the_campaign_adds_up_what_passes_reports_until_done(
    client: httpx.AsyncClient, shop: Onboarded, session: AsyncSession
) -> None:
    ids = [f"c-{n}" for n in range(700)]
    outcomes = ("targeted", "updated", "notified", "silent", "deferred", "skipped")
    before = {outcome: _campaign_cards(outcome) for outcome in outcomes}
    offer = await create(client, shop, target={"customer_ids": ids})
    await progress(
        session,
        shop,
        offer,
        part=1,
        targeted=500,
        updated=480,
        notified=400,
        silent={"capped": 50},
        deferred=30,
        skipped={"opted_out": 12, "not_on_a_device": 8},
    )
    await progress(
        session,
        shop,
        offer,
        part=2,
        parts=2,
        targeted=200,
        updated=190,
        notified=190,
        skipped={"no_card": 10},
    )
    # A part reported again (a redelivery upstream) is counted once.
    await progress(session, shop, offer, part=2, parts=2, targeted=200, updated=190)

    async def both_parts() -> bool:
        return (await campaign_of(client, shop, offer))["parts_done"] == 2

    await eventually(both_parts)
    campaign = await campaign_of(client, shop, offer)
    assert campaign["state"] == "running"  # 30 still held for quiet hours
    assert {k: campaign[k] for k in ("targeted", "updated", "notified", "deferred")} == {
        "targeted": 700,
        "updated": 670,
        "notified": 590,
        "deferred": 30,
    }
    assert campaign["silent"] == {"capped": 50}
    assert campaign["skipped"] == {"opted_out": 12, "not_on_a_device": 8, "no_card": 10}

    clock.advance(timedelta(hours=9))
    await progress(session, shop, offer, deferred=-28, notified=28)
    await progress(session, shop, offer, deferred=-2, skipped={"expired": 2})

    async def done() -> bool:
        return (await campaign_of(client, shop, offer))["state"] == "done"

    await eventually(done)
    campaign = await campaign_of(client, shop, offer)
    assert (campaign["notified"], campaign["deferred"]) == (618, 0)
    assert campaign["skipped"]["expired"] == 2
    assert campaign["finished_at"] == "2026-12-01T21:00:00Z"
    # On-call sees the same across campaigns (the replayed part not counted again).
    added = {outcome: _campaign_cards(outcome) - before[outcome] for outcome in outcomes}
    assert added == {
        "targeted": 700,
        "updated": 670,
        "notified": 618,
        "silent": 50,
        "deferred": 30,
        "skipped": 32,
    }


def _campaign_cards(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("passpost_campaign_cards_total", {"outcome": outcome})
    return sample or 0.0


async def test_a_segment_campaign_is_done_once_the_last_part_says_how_many(
    client: httpx.AsyncClient, shop: Onboarded, session: AsyncSession
) -> None:
    offer = await create(client, shop, target={"segment": {"has_wallet": "any"}})
    await progress(session, shop, offer, part=2, targeted=3, updated=3, notified=3)

    async def counted(parts_done: int) -> bool:
        return (await campaign_of(client, shop, offer))["parts_done"] == parts_done

    await eventually(lambda: counted(1))
    assert (await campaign_of(client, shop, offer))["state"] == "running"
    await progress(session, shop, offer, part=1, parts=2, targeted=500, updated=500)
    await eventually(lambda: counted(2))
    campaign = await campaign_of(client, shop, offer)
    assert (campaign["state"], campaign["parts"], campaign["targeted"]) == ("done", 2, 503)


async def test_cancel_withdraws_the_offer_from_every_card_once(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    offer = await create(client, shop)
    for _ in range(2):
        response = await client.post(f"{OFFERS}/{offer['id']}:cancel", headers=api_auth(shop))
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "cancelled"
    (withdrawn,) = await published(sessionmaker, OfferWithdrawn)
    assert (withdrawn.offer_id, withdrawn.reason, withdrawn.customer_id) == (
        offer["id"],
        "cancelled",
        None,
    )
    assert (await campaign_of(client, shop, offer))["state"] == "cancelled"
    read = await client.get(f"{OFFERS}/{offer['id']}", headers=api_auth(shop))
    assert read.json()["cancelled_at"] == "2026-12-01T12:00:00Z"


async def test_a_scheduled_offer_cancelled_never_starts(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    cancelled = await create(client, shop, valid_from="2026-12-02T08:00:00Z")
    kept = await create(client, shop, valid_from="2026-12-02T08:00:00Z")
    await client.post(f"{OFFERS}/{cancelled['id']}:cancel", headers=api_auth(shop))
    clock.advance(timedelta(days=2))

    async def kept_started() -> bool:
        return (await campaign_of(client, shop, kept))["state"] == "running"

    await eventually(kept_started)
    assert [a.offer.id for a in await published(sessionmaker, CampaignAudience)] == [kept["id"]]
    assert await published(sessionmaker, OfferWithdrawn) == []
    assert (await campaign_of(client, shop, cancelled))["state"] == "cancelled"


async def test_a_coupon_is_redeemed_once_per_customer(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    offer = await create(client, shop)
    url = f"{OFFERS}/{offer['id']}/redemptions"
    first = await client.post(
        url, json={"customer_id": "c-1", "code": "TEA10"}, headers=api_auth(shop)
    )
    assert first.status_code == 201, first.text
    assert first.json() == {
        "offer_id": offer["id"],
        "customer_id": "c-1",
        "code": "TEA10",
        "redeemed_at": "2026-12-01T12:00:00Z",
        "redemptions": 1,
    }
    second = await client.post(
        url, json={"customer_id": "c-1", "code": "TEA10"}, headers=api_auth(shop)
    )
    assert second.status_code == 409
    wrong = await client.post(
        url, json={"customer_id": "c-2", "code": "TEA20"}, headers=api_auth(shop)
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["path"] == "body.code"
    another = await client.post(
        url, json={"customer_id": "c-2", "code": "TEA10"}, headers=api_auth(shop)
    )
    assert another.json()["redemptions"] == 2
    read = await client.get(f"{OFFERS}/{offer['id']}", headers=api_auth(shop))
    assert read.json()["redemptions"] == 2
    withdrawn = await published(sessionmaker, OfferWithdrawn)
    assert [(w.reason, w.customer_id) for w in withdrawn] == [
        ("redeemed", "c-1"),
        ("redeemed", "c-2"),
    ]


async def test_an_expired_or_cancelled_coupon_cannot_be_redeemed(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    expiring = await create(client, shop, valid_until="2026-12-02T12:00:00Z")
    cancelled = await create(client, shop)
    await client.post(f"{OFFERS}/{cancelled['id']}:cancel", headers=api_auth(shop))
    clock.advance(timedelta(days=1))
    for offer, state in ((expiring, "expired"), (cancelled, "cancelled")):
        response = await client.post(
            f"{OFFERS}/{offer['id']}/redemptions",
            json={"customer_id": "c-1", "code": "TEA10"},
            headers=api_auth(shop),
        )
        assert response.status_code == 409
        assert response.json()["details"]["state"] == state
    read = await client.get(f"{OFFERS}/{expiring['id']}", headers=api_auth(shop))
    assert read.json()["state"] == "expired"


async def test_offers_and_campaigns_are_listed_newest_first_a_page_at_a_time(
    client: httpx.AsyncClient, shop: Onboarded, other: Onboarded
) -> None:
    made = []
    for n in range(5):
        made.append((await create(client, shop, offer_id=f"o-{n}"))["id"])
        clock.advance(timedelta(minutes=1))
    await create(client, other, offer_id="theirs")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(OFFERS, params=params, headers=api_auth(shop))).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == made[::-1]
    campaigns = (await client.get("/v1/campaigns", headers=api_auth(shop))).json()
    assert [c["offer_id"] for c in campaigns["items"]] == made[::-1]
    assert campaigns["next_cursor"] is None
    running = await client.get("/v1/campaigns", params={"state": "done"}, headers=api_auth(shop))
    assert running.json()["items"] == []
    garbage = await client.get(OFFERS, params={"cursor": "nope"}, headers=api_auth(shop))
    assert garbage.status_code == 422
    assert garbage.json()["errors"][0]["path"] == "query.cursor"


async def test_the_shop_records_marketing_consent(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    response = await client.post(
        "/v1/customers/c-42/marketing", json={"consent": False}, headers=api_auth(shop)
    )
    assert response.status_code == 202, response.text
    assert response.json() == {
        "customer_id": "c-42",
        "consent": False,
        "at": "2026-12-01T12:00:00Z",
    }
    (message,) = await published(sessionmaker, MarketingConsentSet)
    assert (message.merchant_id, message.customer_id, message.consent, message.at) == (
        shop.merchant.id,
        "c-42",
        False,
        NOW,
    )
    bad = await client.post(
        "/v1/customers/c-42/marketing", json={"consent": "maybe"}, headers=api_auth(shop)
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "body.consent"


async def test_stats_add_up_the_channels_counts_over_a_period(
    client: httpx.AsyncClient, shop: Onboarded, other: Onboarded, session: AsyncSession
) -> None:
    def counted(onboarded: Onboarded, day: str, **counts: int) -> ChannelCounted:
        return ChannelCounted.model_validate(
            {"merchant_id": onboarded.merchant.id, "day": day, "counts": counts}
        )

    for message in (
        counted(shop, "2026-11-30", **{"cards.issued": 3, "apple.registered": 2}),
        counted(shop, "2026-12-01", **{"cards.issued": 1, "notifications.marketing": 2}),
        counted(shop, "2026-12-01", **{"notifications.marketing": 1, "suppressed.capped": 4}),
        counted(shop, "2026-11-01", **{"cards.issued": 100}),
        counted(other, "2026-12-01", **{"cards.issued": 50}),
    ):
        publish(session, message, key=str(message.merchant_id))
    await session.commit()

    async def stats(**params: str) -> dict[str, Any]:
        response = await client.get("/v1/stats", params=params, headers=api_auth(shop))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def all_counted() -> bool:
        return (await stats(**{"from": "2026-11-01"}))["cards"]["issued"] == 104

    await eventually(all_counted)
    week = await stats(**{"from": "2026-11-25", "to": "2026-12-01"})
    assert week["cards"] == {"issued": 4}
    assert week["apple"] == {"registered": 2, "unregistered": 0}
    assert week["google"] == {"saved": 0, "removed": 0}
    assert week["notifications"] == {"status": 0, "marketing": 3}
    assert week["suppressed"] == {"capped": 4}
    assert [d["day"] for d in week["days"]] == ["2026-11-30", "2026-12-01"]
    assert (await stats())["cards"]["issued"] == 4  # the last 30 days by the clock
    for params, path in (
        ({"from": "2026-12-02", "to": "2026-12-01"}, "query.from"),
        ({"from": "2024-01-01", "to": "2026-12-01"}, "query.from"),
        ({"from": "yesterday"}, "query.from"),
    ):
        response = await client.get("/v1/stats", params=params, headers=api_auth(shop))
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == path


ROUTES = [
    ("POST", OFFERS, offer_body()),
    ("GET", OFFERS, None),
    ("GET", f"{OFFERS}/{{offer}}", None),
    ("POST", f"{OFFERS}/{{offer}}:cancel", None),
    ("POST", f"{OFFERS}/{{offer}}/redemptions", {"customer_id": "c-1", "code": "TEA10"}),
    ("GET", "/v1/campaigns", None),
    ("GET", "/v1/campaigns/{campaign}", None),
    ("POST", "/v1/campaigns/{campaign}/audience", {"customer_ids": ["c-9"]}),
    ("GET", "/v1/stats", None),
    ("POST", "/v1/customers/c-1/marketing", {"consent": True}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_wants_the_merchants_key_and_keeps_merchants_apart(
    client: httpx.AsyncClient,
    shop: Onboarded,
    other: Onboarded,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    offer = await create(client, shop, offer_id="mine")
    url = path.format(offer=offer["id"], campaign=offer["campaign_id"])
    anonymous = await client.request(method, url, json=body)
    assert anonymous.status_code == 401
    bad_key = await client.request(method, url, json=body, headers={"Authorization": "Bearer x"})
    assert bad_key.status_code == 401
    theirs = await client.request(method, url, json=body, headers=api_auth(other))
    if "{" in path:
        assert theirs.status_code == 404, theirs.text
    else:
        assert theirs.status_code in (200, 202), theirs.text
        assert "mine" not in theirs.text
    mine = await client.request(method, url, json=body, headers=api_auth(shop))
    assert mine.status_code in (200, 201, 202), mine.text


async def test_a_merchant_that_signs_its_requests_must_sign_offers_too(
    client: httpx.AsyncClient, session: AsyncSession, shop: Onboarded
) -> None:
    merchant = await session.merge(shop.merchant)
    secret = await rotate_signing_secret(session, merchant, enable=True)
    await session.commit()
    assert secret is not None
    body = json.dumps(offer_body()).encode()
    headers = {**api_auth(shop), "Content-Type": "application/json"}
    unsigned = await client.post(OFFERS, content=body, headers=headers)
    assert unsigned.status_code == 401
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, "sha256").hexdigest()
    signed = await client.post(
        OFFERS, content=body, headers={**headers, "Passpost-Signature": f"t={stamp},v1={mac}"}
    )
    assert signed.status_code == 202, signed.text
