"""Fixtures the offers tests share: two shops, and the clock stopped at a known time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.cli import ServiceName, components_of
from services.core.clock import clock
from services.core.queue import OutboxMessage
from services.core.queue.contract import Contract
from services.core.settings import Settings
from services.core.web import create_app
from services.onboarding import Onboarded
from tests.factories import create_merchant

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
C = TypeVar("C", bound=Contract)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The shop's API as ``serve orders`` serves it (orders and offers): passes does not run,
    so what offers publishes for it stays in the outbox for the tests to read, and a campaign
    moves only by the ``campaign.progress`` a test publishes. (Passes taking its part is
    ``tests/e2e/test_campaign_through_the_api.py``.)"""
    app = create_app(settings, components_of(ServiceName.orders, settings))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(autouse=True)
def stopped_clock() -> Iterator[None]:
    clock.set(NOW)
    yield
    clock.reset()


@pytest.fixture
async def shop(session: AsyncSession, settings: Settings) -> Onboarded:
    return await create_merchant(session, settings)


@pytest.fixture
async def other(session: AsyncSession, settings: Settings) -> Onboarded:
    return await create_merchant(session, settings, slug="other", name="Other")


async def published(sessionmaker: async_sessionmaker[AsyncSession], contract: type[C]) -> list[C]:
    """Every ``contract`` message published so far, in publish order."""
    query = (
        select(OutboxMessage.payload)
        .where(OutboxMessage.topic == contract.topic)
        .order_by(OutboxMessage.id)
    )
    async with sessionmaker() as session:
        return [contract.model_validate(payload) for payload in await session.scalars(query)]
