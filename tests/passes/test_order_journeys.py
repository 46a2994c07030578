"""The journeys an order's change starts, step by step: when they are due, and what a later
order does to them (``passes/journeys/after_orders.py``); end to end in
``tests/e2e/test_order_journeys.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.clock import clock
from services.core.settings import Settings
from services.merchants.journeys import DEFAULTS, update_journey
from services.passes.journeys import refill
from services.passes.journeys.models import JourneyStep
from services.passes.journeys.timing import due_after
from tests.factories import create_merchant
from tests.passes.test_cards import _apply, change

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_step_after_an_order_is_due_after_its_delay_or_at_once_or_never() -> None:
    settings = DEFAULTS["feedback"]  # 14 days on the card
    day = 24 * 60
    assert due_after(NOW, 3 * day, settings, NOW) == NOW + timedelta(days=3)
    late = NOW - timedelta(days=5)
    assert due_after(late, 3 * day, settings, NOW) == NOW, "an event that came late: at once"
    old = NOW - timedelta(days=20)
    assert due_after(old, 3 * day, settings, NOW) is None, "it would have left the card by now"


async def test_a_reminder_is_not_sent_when_a_later_order_bought_the_product_first(
    session: AsyncSession, settings: Settings
) -> None:
    clock.set(NOW)
    try:
        shop = await create_merchant(session, settings)
        tea = [{"name": "Green tea", "product_id": "tea", "refill_after_days": 30}]
        m = shop.merchant
        first, second = "2026-11-20T10:00+00:00", "2026-11-25T10:00+00:00"
        await _apply(session, m, change("A-1", "shipped", 1, first, items=tea))
        # The second order of tea is seen before the first one's delivery arrives.
        await _apply(session, m, change("A-2", "placed", 1, second, items=tea))
        delivered = _at(change("A-1", "delivered", 2, first, items=tea), NOW.isoformat())
        card = await _apply(session, m, delivered)
        step = await session.scalar(select(JourneyStep).where(JourneyStep.journey == "refill"))
        assert step is not None
        assert step.key == "tea A-1"
        composed = await refill.compose(session, card, step, DEFAULTS["refill"], NOW)
        assert composed == "bought_again"
    finally:
        clock.reset()


async def test_the_merchants_refill_days_stand_for_items_without_their_own(
    session: AsyncSession, settings: Settings
) -> None:
    clock.set(NOW)
    try:
        shop = await create_merchant(session, settings)
        merchant = await session.merge(shop.merchant)
        await update_journey(session, merchant, "refill", {"products": {"filters": 60}})
        await session.commit()
        items = [
            {"name": "Water filters", "product_id": "filters"},
            {"name": "Green tea", "product_id": "tea", "refill_after_days": 30},
            {"name": "Kettle"},
        ]
        at = NOW.isoformat()
        await _apply(session, merchant, _at(change("A-1", "delivered", 1, at, items=items), at))
        refills = select(JourneyStep.key, JourneyStep.due_at).where(JourneyStep.journey == "refill")
        due = {key: at for key, at in (await session.execute(refills)).all()}
        assert due == {
            "filters A-1": NOW + timedelta(days=60),
            "tea A-1": NOW + timedelta(days=30),
        }
    finally:
        clock.reset()


def _at(payload: dict[str, Any], occurred_at: str) -> dict[str, Any]:
    """The change as it happened at ``occurred_at`` (the delivery's time)."""
    return {**payload, "occurred_at": occurred_at}
