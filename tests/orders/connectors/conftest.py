"""The shop with all three connectors configured, and the clock stopped where a test needs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.clock import clock
from services.onboarding import Onboarded
from services.orders.connectors import service
from services.orders.connectors.common import Platform
from services.orders.connectors.schemas import ConnectorConfigure
from tests.orders.connectors.platforms import (
    SHOPIFY_SECRET,
    SHOPTET_KEY,
    SHOPTET_TOKEN,
    WOO_SECRET,
)


async def connect(session: AsyncSession, shop: Onboarded) -> None:
    """The shop's Shopify, WooCommerce and Shoptet connectors, as ``connectors configure``."""
    for platform, secret, token in (
        (Platform.shopify, SHOPIFY_SECRET, None),
        (Platform.woocommerce, WOO_SECRET, None),
        (Platform.shoptet, SHOPTET_KEY, SHOPTET_TOKEN),
    ):
        body = ConnectorConfigure(secrets=[secret], api_token=token)
        await service.configure(session, shop.merchant, platform, body)
    await session.commit()


@pytest.fixture
async def connected(session: AsyncSession, shop: Onboarded) -> Onboarded:
    await connect(session, shop)
    return shop


@pytest.fixture
def stopped_clock() -> Iterator[None]:
    yield
    clock.reset()
