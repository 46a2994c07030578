"""Async factories for test data: each makes a valid object with what a test leaves out."""

from __future__ import annotations

import itertools

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.settings import Settings
from services.merchants.schemas import MerchantCreate
from services.onboarding import Onboarded, onboard_merchant
from services.passes.issuing import issue_card
from services.passes.models import Card
from services.passes.schemas import Branding, CardIssue

_customers = itertools.count(1)

SHOP_BRANDING = Branding(
    support_phone="+421 2 1234 5678",
    order_url_template="https://shop.example.com/orders/{order_id}",
    tracking_url_template="https://track.example.com/{tracking_number}",
    returns_url_template="https://shop.example.com/returns?order={order_number}",
    account_url_template="https://shop.example.com/account",
)


async def create_merchant(
    session: AsyncSession, settings: Settings, slug: str = "shop", name: str = "Shop"
) -> Onboarded:
    """A merchant with an API key and a design signed by the development chain (committed)."""
    onboarded = await onboard_merchant(
        session, settings, MerchantCreate(slug=slug, name=name), branding=SHOP_BRANDING
    )
    await session.commit()
    return onboarded


TEST_SECRET_KEY = b"test-secret-key-of-at-least-32-characters"


async def create_card(
    session: AsyncSession,
    onboarded: Onboarded,
    customer_id: str | None = None,
    name: str | None = "Jana Nováková",
    locale: str | None = "sk",
) -> Card:
    card = await issue_card(
        session,
        onboarded.merchant,
        CardIssue(
            customer_id=customer_id or f"c-{next(_customers)}", customer_name=name, locale=locale
        ),
        TEST_SECRET_KEY,
    )
    await session.commit()
    return card
