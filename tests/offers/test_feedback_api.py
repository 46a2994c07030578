"""The feedback API: one rating per order (the latest wins, by either path), the list newest
first with its filters and cursor, and NPS over the stats' period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import FeedbackGiven, FeedbackRecorded
from services.core.clock import clock
from services.core.queue import publish
from services.onboarding import Onboarded
from tests.factories import api_auth
from tests.offers.conftest import NOW, published
from tests.waiting import eventually, topic_drained


async def rate(
    client: httpx.AsyncClient, shop: Onboarded, customer: str, order: str, score: int
) -> dict[str, Any]:
    answer = await client.post(
        f"/v1/customers/{customer}/feedback",
        json={"order_id": order, "score": score},
        headers=api_auth(shop),
    )
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


async def listed(client: httpx.AsyncClient, shop: Onboarded, query: str = "") -> dict[str, Any]:
    answer = await client.get(f"/v1/feedback{query}", headers=api_auth(shop))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_the_list_is_newest_first_by_period_and_score_a_page_at_a_time(
    client: httpx.AsyncClient, shop: Onboarded, other: Onboarded
) -> None:
    scores = [10, 9, 7, 6, 0, 3, 8]
    for day, score in enumerate(scores):
        clock.set(NOW + timedelta(days=day))
        await rate(client, shop, f"c-{day}", f"A-{day}", score)
    await rate(client, other, "c-0", "A-0", 1)  # another shop's: never in ours

    everything = await listed(client, shop)
    assert [item["score"] for item in everything["items"]] == scores[::-1]
    assert everything["next_cursor"] is None
    pages, cursor = [], ""
    while True:
        page = await listed(client, shop, f"?limit=3{cursor}")
        pages.append([item["order_id"] for item in page["items"]])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert pages == [["A-6", "A-5", "A-4"], ["A-3", "A-2", "A-1"], ["A-0"]]
    detractors = await listed(client, shop, "?max_score=6")
    assert [item["score"] for item in detractors["items"]] == [3, 0, 6]
    period = await listed(client, shop, "?from=2026-12-02&to=2026-12-03&min_score=7")
    assert [item["order_id"] for item in period["items"]] == ["A-2", "A-1"]

    stats = await client.get("/v1/stats?from=2026-12-01&to=2026-12-07", headers=api_auth(shop))
    assert stats.json()["nps"] == {
        "responses": 7,
        "promoters": 2,
        "passives": 2,
        "detractors": 3,
        "score": -14.3,
    }
    none = await client.get("/v1/stats?from=2026-11-01&to=2026-11-30", headers=api_auth(shop))
    assert none.json()["nps"] == {
        "responses": 0,
        "promoters": 0,
        "passives": 0,
        "detractors": 0,
        "score": None,
    }


async def test_a_list_query_out_of_range_is_422_naming_it(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    for query, path in [
        ("?from=2026-12-05&to=2026-12-01", "query.from"),
        ("?min_score=8&max_score=2", "query.min_score"),
        ("?max_score=11", "query.max_score"),
        ("?cursor=nope", "query.cursor"),
        ("?from=20261201", "query.from"),
    ]:
        answer = await client.get(f"/v1/feedback{query}", headers=api_auth(shop))
        assert answer.status_code == 422, (query, answer.text)
        assert path in [e["path"] for e in answer.json()["errors"]], answer.text


async def test_the_latest_rating_wins_whichever_path_it_came_by(
    client: httpx.AsyncClient,
    shop: Onboarded,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The card's page (``feedback.given``) and the API keep one rating per order: an older
    one arriving late changes nothing; the API tells passes of each rating it keeps."""
    first = await rate(client, shop, "c-42", "A-1", 9)
    assert first["replaced"] is False

    async def given(score: int, at_minutes: int) -> None:
        async with sessionmaker() as session:
            at = NOW + timedelta(minutes=at_minutes)
            publish(
                session,
                FeedbackGiven(
                    merchant_id=shop.merchant.id,
                    customer_id="c-42",
                    order_id="A-1",
                    score=score,
                    text="from the card",
                    at=at,
                ),
            )
            await session.commit()
        await eventually(lambda: topic_drained(sessionmaker, FeedbackGiven.topic))

    await given(2, at_minutes=-10)  # given on the card before the shop's call: older
    [item] = (await listed(client, shop))["items"]
    assert (item["score"], item["source"]) == (9, "api")
    await given(4, at_minutes=10)
    [item] = (await listed(client, shop))["items"]
    assert (item["score"], item["source"], item["text"]) == (4, "card", "from the card")
    assert item["created_at"] == first["created_at"]

    clock.set(NOW + timedelta(hours=1))
    again = await rate(client, shop, "c-42", "A-1", 10)
    assert (again["replaced"], again["score"], again["text"]) == (True, 10, None)
    told = await published(sessionmaker, FeedbackRecorded)
    assert [(m.order_id, m.score) for m in told] == [("A-1", 9), ("A-1", 10)]
