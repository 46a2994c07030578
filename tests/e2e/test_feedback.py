"""Feedback end to end: the card's page rates the latest delivered order, the shop's API rates
too, offers keeps one rating per order (NPS in the stats), and the card's back and the thank-you
page follow the score up (9-10 a review invitation, 0-6 "talk to us"), without a notification."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.apns_standin import ApnsStandin
from services.core.clock import clock
from services.core.settings import Settings
from services.onboarding import Onboarded
from services.passes.models import Card
from tests.e2e.marketing import (
    at_noon,
    card_registered,
    fields,
    notifying_changes,
    ordered_card,
    pass_json,
    pushed_in_all,
    settled,
)
from tests.factories import api_auth, create_merchant, order_event, post_order_event

__all__ = ["at_noon"]

REVIEW = "https://reviews.example.com/shop?order={order_id}"
SURVEY = "https://shop.example.com/sorry/{order_number}"


async def _shop_with_followups(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> Onboarded:
    shop = await create_merchant(session, settings)
    branding = {"review_url_template": REVIEW, "survey_url_template": SURVEY}
    set_up = await client.patch(
        f"/admin/v1/merchants/{shop.merchant.slug}/branding",
        json=branding,
        headers={"Authorization": f"Bearer {settings.ensure_admin_token()}"},
    )
    assert set_up.status_code == 204, set_up.text
    return shop


async def _delivered_card(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], shop: Onboarded
) -> Card:
    card = await ordered_card(client, sessionmaker, shop)
    await post_order_event(
        client, shop.api_key, order_event("delivered", at="2026-11-24T10:00:00Z")
    )
    await settled(sessionmaker)
    return card


async def _feedback(client: httpx.AsyncClient, shop: Onboarded, query: str = "") -> Any:
    listed = await client.get(f"/v1/feedback{query}", headers=api_auth(shop))
    assert listed.status_code == 200, listed.text
    return listed.json()


async def test_a_rating_on_the_cards_page_reaches_the_shop_and_the_back_of_the_card(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await _shop_with_followups(client, session, settings)
    card = await ordered_card(client, sessionmaker, shop)
    await card_registered(client, card)
    landing = f"/c/{card.link_token}"
    assert 'id="feedback"' not in (await client.get(landing)).text, "nothing delivered yet"

    await post_order_event(
        client, shop.api_key, order_event("delivered", at="2026-11-24T10:00:00Z")
    )
    await settled(sessionmaker)
    delivered = await pass_json(client, card)
    pushes = standin.push_count
    page = await client.get(landing)
    assert "form-action 'self'" in page.headers["content-security-policy"]
    form = re.search(
        r'<form class="feedback" id="feedback" method="post" action="([^"]+)">', page.text
    )
    assert form is not None
    assert form.group(1) == f"{landing}/feedback"
    assert "Ako ste boli spokojní s objednávkou 1001?" in page.text
    assert '<input type="hidden" name="order_id" value="A-1001">' in page.text
    assert len(re.findall(r'type="radio" name="score"', page.text)) == 11

    thanks = await client.post(
        form.group(1), data={"order_id": "A-1001", "score": "10", "text": "Fast!\r\nThanks."}
    )
    assert thanks.status_code == 200, thanks.text
    assert 'id="done"' in thanks.text
    review = re.search(r'<a class="followup" id="review" href="([^"]+)"', thanks.text)
    assert review is not None
    assert review.group(1) == "https://reviews.example.com/shop?order=A-1001"
    assert thanks.headers["referrer-policy"] == "no-referrer"

    await pushed_in_all(standin, sessionmaker, pushes + 1)  # the new back, silently
    rated = await pass_json(client, card)
    assert notifying_changes(delivered, rated) == set()
    back = fields(rated)["link_review"]
    assert (back["label"], back["value"]) == ("back.review", review.group(1))
    [item] = (await _feedback(client, shop))["items"]
    assert (item["customer_id"], item["order_id"], item["score"]) == ("c-42", "A-1001", 10)
    assert (item["source"], item["text"]) == ("card", "Fast!\nThanks.")
    nps = (await client.get("/v1/stats", headers=api_auth(shop))).json()["nps"]
    assert nps == {"responses": 1, "promoters": 1, "passives": 0, "detractors": 0, "score": 100.0}

    # The page shows the rating as chosen; a second one replaces it (and its follow-up).
    assert 'value="10" id="score-10" required checked' in (await client.get(landing)).text
    clock.advance(timedelta(minutes=5))
    sorry = await client.post(f"{landing}/feedback", data={"order_id": "A-1001", "score": "4"})
    talk = re.search(r'<a class="followup" id="sorry" href="([^"]+)"', sorry.text)
    assert talk is not None
    assert talk.group(1) == "https://shop.example.com/sorry/1001"
    assert "Mrzí nás to: ozvite sa nám" in sorry.text
    await pushed_in_all(standin, sessionmaker, pushes + 2)
    again = fields(await pass_json(client, card))
    assert "link_review" not in again
    assert again["link_sorry"]["value"] == "https://shop.example.com/sorry/1001"
    [item] = (await _feedback(client, shop))["items"]
    assert (item["score"], item["text"]) == (4, None)
    nps = (await client.get("/v1/stats", headers=api_auth(shop))).json()["nps"]
    assert nps == {"responses": 1, "promoters": 0, "passives": 0, "detractors": 1, "score": -100.0}


async def test_the_shops_rating_replaces_and_the_card_follows_it_up_too(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    standin: ApnsStandin,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await _shop_with_followups(client, session, settings)
    card = await _delivered_card(client, sessionmaker, shop)
    await card_registered(client, card)
    before = await pass_json(client, card)
    pushes = standin.push_count
    url = "/v1/customers/c-42/feedback"

    first = await client.post(url, json={"order_id": "A-1001", "score": 3}, headers=api_auth(shop))
    assert first.status_code == 201, first.text
    assert (first.json()["replaced"], first.json()["source"]) == (False, "api")
    await pushed_in_all(standin, sessionmaker, pushes + 1)
    after_first = await pass_json(client, card)
    assert fields(after_first)["link_sorry"]["value"] == "https://shop.example.com/sorry/1001"
    assert notifying_changes(before, after_first) == set()

    clock.advance(timedelta(hours=1))
    body = {"order_id": "A-1001", "score": 9, "text": "Sorted out, thanks"}
    second = await client.post(url, json=body, headers=api_auth(shop))
    assert second.status_code == 200, second.text
    assert (second.json()["replaced"], second.json()["score"]) == (True, 9)
    assert second.json()["created_at"] < second.json()["rated_at"]
    await pushed_in_all(standin, sessionmaker, pushes + 2)
    shown = fields(await pass_json(client, card))
    assert shown["link_review"]["value"] == "https://reviews.example.com/shop?order=A-1001"
    assert "link_sorry" not in shown
    [item] = (await _feedback(client, shop))["items"]
    assert (item["score"], item["text"], item["source"]) == (9, "Sorted out, thanks", "api")

    # A passive (7-8) has no follow-up; a customer without a card is rated all the same.
    clock.advance(timedelta(hours=1))
    passive = {"order_id": "A-1001", "score": 8}
    assert (await client.post(url, json=passive, headers=api_auth(shop))).status_code == 200
    await pushed_in_all(standin, sessionmaker, pushes + 3)
    shown = fields(await pass_json(client, card))
    assert "link_review" not in shown
    assert "link_sorry" not in shown
    stranger = {"order_id": "B-1", "score": 0}
    answer = await client.post("/v1/customers/c-7/feedback", json=stranger, headers=api_auth(shop))
    assert answer.status_code == 201
    await settled(sessionmaker)
    assert standin.push_count == pushes + 3
    nps = (await client.get("/v1/stats", headers=api_auth(shop))).json()["nps"]
    assert nps == {"responses": 2, "promoters": 0, "passives": 1, "detractors": 1, "score": -50.0}


async def test_the_page_refuses_what_is_not_a_rating_of_a_received_order(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    client = device_client
    shop = await create_merchant(session, settings)
    card = await ordered_card(client, sessionmaker, shop)
    url = f"/c/{card.link_token}/feedback"
    nothing = await client.get(url)
    assert nothing.status_code == 200
    assert 'id="nothing"' in nothing.text
    early = await client.post(url, data={"order_id": "A-1001", "score": "9"})
    assert early.status_code == 422
    assert early.json()["details"]["errors"][0]["loc"] == ["body", "order_id"]

    await post_order_event(
        client, shop.api_key, order_event("delivered", at="2026-11-24T10:00:00Z")
    )
    await settled(sessionmaker)
    cases = [
        ({"order_id": "A-1001", "score": "11"}, "score"),
        ({"order_id": "A-1001", "score": "nine"}, "score"),
        ({"order_id": "A-1001"}, "score"),
        ({"order_id": "A-9999", "score": "9"}, "order_id"),
        ({"order_id": "A-1001", "score": "9", "text": "a\x00b"}, "text"),
        ({"order_id": "A-1001", "score": "9", "text": "x" * 2001}, "text"),
    ]
    for form, field in cases:
        refused = await client.post(url, data=form)
        assert refused.status_code == 422, (form, refused.text)
        assert refused.json()["details"]["errors"][0]["loc"] == ["body", field]
    # Without the merchant's survey link, "talk to us" is its support phone.
    phone = await client.patch(
        f"/admin/v1/merchants/{shop.merchant.slug}/branding",
        json={"support_phone": "+421 2 1234 5678"},
        headers={"Authorization": f"Bearer {settings.ensure_admin_token()}"},
    )
    assert phone.status_code == 204
    thanks = await client.post(url, data={"order_id": "A-1001", "score": "2"})
    assert thanks.status_code == 200
    assert '<a class="followup" id="sorry" href="tel:+421212345678"' in thanks.text
    await settled(sessionmaker)
    assert (await _feedback(client, shop))["items"][0]["score"] == 2


async def test_the_shop_api_refuses_bad_ratings_with_the_field_path(
    at_noon: datetime,
    device_client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
) -> None:
    shop = await create_merchant(session, settings)
    url = "/v1/customers/c-42/feedback"
    cases = [
        ({"order_id": "A-1", "score": 11}, "body.score"),
        ({"order_id": "A-1", "score": -1}, "body.score"),
        ({"order_id": "A-1", "score": "9"}, "body.score"),
        ({"order_id": "A-1", "score": 9.5}, "body.score"),
        ({"order_id": "A 1", "score": 9}, "body.order_id"),
        ({"order_id": "A-1", "score": 9, "text": "nul\x00"}, "body.text"),
        ({"order_id": "A-1", "score": 9, "stars": 5}, "body.stars"),
    ]
    for body, path in cases:
        refused = await device_client.post(url, json=body, headers=api_auth(shop))
        assert refused.status_code == 422, (body, refused.text)
        assert path in [e["path"] for e in refused.json()["errors"]], refused.text
    unauthorized = await device_client.post(url, json={"order_id": "A-1", "score": 9})
    assert unauthorized.status_code == 401
    assert (await _feedback(device_client, shop))["items"] == []
