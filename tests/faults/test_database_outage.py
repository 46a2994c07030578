"""PostgreSQL away for 10 seconds: the connections between the service and the database are
cut by a proxy (the real server keeps running for everyone else)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.cli import ServiceName, components_of
from services.core.queue import OutboxMessage
from services.core.settings import Settings
from services.core.web import create_app
from services.onboarding import Onboarded
from services.orders.models import Order
from services.passes.models import Card
from tests.conftest import BASE_URL
from tests.factories import EVENTS, api_auth, create_merchant, order_event
from tests.faults.conftest import Figures
from tests.faults.proxy import CuttableProxy
from tests.waiting import eventually, queue_drained

OUTAGE_SECONDS = 10.0
QUICK_SECONDS = 3.0
"""How long an answer may take while the database is away: a 503 at once, not a hang."""


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[CuttableProxy]:
    if settings.is_sqlite:
        pytest.skip("SQLite is a file in the process: there is no connection to cut")
    url = make_url(settings.resolved_database_url)
    async with CuttableProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


class Shop:
    """Posts order events, one new customer each, and keeps what was answered."""

    def __init__(self, client: httpx.AsyncClient, onboarded: Onboarded) -> None:
        self._client = client
        self._auth = api_auth(onboarded)
        self._count = 0
        self.accepted: list[int] = []
        """The numbers of the events answered 202 (order O-n of customer pg-n)."""
        self.statuses: list[int] = []
        self.slowest = 0.0

    async def post(self) -> int:
        self._count += 1
        customer = f"pg-{self._count}"
        event = order_event(
            order_id=f"O-{self._count}", customer={"id": customer, "name": "Jana", "locale": "sk"}
        )
        started = time.monotonic()
        answer = await self._client.post(EVENTS, json=event, headers=self._auth)
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.statuses.append(answer.status_code)
        if answer.status_code == 202:
            self.accepted.append(self._count)
        else:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "database_unavailable"
            assert answer.headers["retry-after"]
        return answer.status_code


async def test_postgresql_away_for_10_seconds(
    settings: Settings,
    proxy: CuttableProxy,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    onboarded = await create_merchant(session, settings)
    through_proxy = settings.model_copy(
        update={
            "database_url": make_url(settings.resolved_database_url)
            .set(port=proxy.port)
            .render_as_string(hide_password=False),
            "queue_lease_seconds": 5.0,
        }
    )
    figures = Figures("postgresql_away_10_s", "postgresql")
    app = create_app(through_proxy, components_of(ServiceName.all, through_proxy))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            shop = Shop(client, onboarded)
            for _ in range(20):
                assert await shop.post() == 202
            before = len(shop.statuses)

            await proxy.cut()
            cut_at = time.monotonic()
            readiness = []
            while time.monotonic() - cut_at < OUTAGE_SECONDS:
                await shop.post()
                readiness.append((await client.get("/readyz")).status_code)
                await asyncio.sleep(0.1)  # the shop's pace during the outage
            during = shop.statuses[before:]
            figures.answers_5xx = during.count(503)
            assert during.count(503) >= len(during) - 1  # the first may have been in flight
            assert shop.slowest < QUICK_SECONDS
            assert 503 in readiness
            await proxy.restore()

            await eventually(lambda: _accepts(shop), seconds=30)
            for _ in range(20):
                assert await shop.post() == 202
            await eventually(lambda: queue_drained(sessionmaker), seconds=60)
    figures.events = len(shop.accepted)
    figures.faults_injected = proxy.connections_cut
    figures.deliveries = len(shop.accepted)
    figures.lost = await _not_applied(sessionmaker, shop.accepted)
    assert figures.lost == 0
    figures.record()


async def _accepts(shop: Shop) -> bool:
    """The service took an event again, by itself."""
    return await shop.post() == 202


async def _not_applied(sessionmaker: async_sessionmaker[AsyncSession], accepted: list[int]) -> int:
    """Events answered 202 whose order or whose customer's card is missing, and messages given
    up on."""
    async with sessionmaker() as session:
        orders = set((await session.scalars(select(Order.external_id))).all())
        customers = set((await session.scalars(select(Card.customer_id))).all())
        failed = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.failed_at.is_not(None))
        )
    missing = [n for n in accepted if f"O-{n}" not in orders or f"pg-{n}" not in customers]
    return len(missing) + int(failed or 0)
