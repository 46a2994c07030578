"""Group commit of single events: shared transactions, answers of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as SyncSession

from services.core.settings import Settings
from services.merchants.models import Merchant
from services.onboarding import Onboarded
from services.orders import service
from services.orders.schemas import OrderEventIn
from tests.conftest import BASE_URL
from tests.factories import EVENTS, api_auth, order_event
from tests.statements import statements_of


async def post_all(
    client: httpx.AsyncClient, shop: Onboarded, events: Sequence[dict[str, Any]]
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post(EVENTS, json=e, headers=api_auth(shop)) for e in events)
    )


async def test_events_posted_together_share_a_transaction(
    app: FastAPI, client: httpx.AsyncClient, shop: Onboarded
) -> None:
    events = [order_event(order_id=f"G-{n}") for n in range(8)]
    with statements_of(app.state.engine) as statements:
        answers = await post_all(client, shop, events)
    assert [a.status_code for a in answers] == [202] * 8
    assert [a.json()["order"]["id"] for a in answers] == [f"G-{n}" for n in range(8)]
    commits = [s for s in statements if s.startswith("INSERT INTO order_events")]
    assert len(commits) < 8, "one insert of order events per transaction"
    for n in range(8):
        assert (await client.get(f"/v1/orders/G-{n}", headers=api_auth(shop))).status_code == 200


async def test_a_refused_event_fails_only_its_own_request(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    first = await client.post(EVENTS, json=order_event(order_id="R-1"), headers=api_auth(shop))
    assert first.status_code == 202
    stranger = order_event(order_id="R-1")
    stranger["order"]["customer"]["id"] = "someone-else"
    malformed = order_event(order_id="R-3")
    malformed["occurred_at"] = "yesterday"
    events = [order_event(order_id="R-2"), stranger, malformed, order_event(order_id="R-4")]
    answers = await post_all(client, shop, events)
    assert [a.status_code for a in answers] == [202, 409, 422, 202]
    assert answers[1].json()["message"] == "order 'R-1' belongs to another customer"
    for order_id, status in (("R-2", 200), ("R-3", 404), ("R-4", 200)):
        found = await client.get(f"/v1/orders/{order_id}", headers=api_auth(shop))
        assert found.status_code == status


async def test_one_id_twice_in_a_group_is_applied_once(
    client: httpx.AsyncClient, shop: Onboarded
) -> None:
    same = order_event(order_id="D-1", event_id="evt_twice")
    first = order_event(order_id="D-2", event_id="evt_reused")
    other_body = order_event("processing", order_id="D-2", event_id="evt_reused")
    answers = await post_all(client, shop, [same, same, first, other_body])
    assert [a.status_code for a in answers[:2]] == [202, 202]
    assert sorted(a.json()["duplicate"] for a in answers[:2]) == [False, True]
    assert answers[0].json()["order"] == answers[1].json()["order"]
    # Whichever body came first is the event; the other is refused.
    assert sorted(a.status_code for a in answers[2:]) == [202, 409]
    for order_id in ("D-1", "D-2"):
        order = (await client.get(f"/v1/orders/{order_id}", headers=api_auth(shop))).json()
        assert len(order["history"]) == 1


@pytest.fixture
async def failing_client(app: FastAPI) -> Any:
    """A client that sees a 500 as the shop would, not as the app's exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def test_a_failed_commit_fails_every_request_of_the_group(
    app: FastAPI, failing_client: httpx.AsyncClient, client: httpx.AsyncClient, shop: Onboarded
) -> None:
    def refuse(_session: SyncSession) -> None:
        raise RuntimeError("the database went away")

    event.listen(SyncSession, "before_commit", refuse)
    try:
        answers = await post_all(
            failing_client, shop, [order_event(order_id=f"F-{n}") for n in range(4)]
        )
    finally:
        event.remove(SyncSession, "before_commit", refuse)
    assert [a.status_code for a in answers] == [500] * 4
    for n in range(4):
        assert (await client.get(f"/v1/orders/F-{n}", headers=api_auth(shop))).status_code == 404


async def test_a_failing_event_is_tried_alone_and_the_others_commit(
    monkeypatch: pytest.MonkeyPatch,
    failing_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    shop: Onboarded,
) -> None:
    ingest_events = service.ingest_events

    async def fails_on_poison(
        session: AsyncSession,
        merchant: Merchant,
        events: Sequence[OrderEventIn],
        settings: Settings,
    ) -> Any:
        outcomes = await ingest_events(session, merchant, events, settings)
        if any(e.id == "evt_poison" for e in events):
            raise RuntimeError("a statement failed for this event")
        return outcomes

    monkeypatch.setattr(service, "ingest_events", fails_on_poison)
    events = [order_event(order_id=f"P-{n}") for n in range(4)]
    events[1] = order_event(order_id="P-1", event_id="evt_poison")
    answers = await post_all(failing_client, shop, events)
    assert [a.status_code for a in answers] == [202, 500, 202, 202]
    for n, status in enumerate([200, 404, 200, 200]):
        assert (await client.get(f"/v1/orders/P-{n}", headers=api_auth(shop))).status_code == status
