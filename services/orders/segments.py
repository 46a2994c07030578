"""A campaign's segment, as far as orders answer for it: who ordered what, and when.

``campaign.started`` asks for the customers the segment's order criteria hold for. They are
found a page at a time, in customer id order, through the ``(merchant_id, customer_id)``
index: each page is answered with a ``campaign.audience`` for passes (which applies the card
criteria) and, while customers remain, the next ``campaign.started`` after the page's last
customer, so no transaction handles more than a page however many customers the shop has.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CampaignAudience, CampaignStarted, OrderCriteria
from services.contracts.orders import OrderStatus
from services.core.clock import clock
from services.core.queue import publish_all
from services.core.queue.contract import Contract
from services.orders.models import Order

PAGE = 500
"""Customers per audience part."""
NOT_SPENT = (OrderStatus.cancelled.value, OrderStatus.refunded.value)
"""Orders that count neither as orders nor as money spent (``min_orders``, ``min_total_spent``)."""


def holds(criteria: OrderCriteria, now: datetime) -> list[ColumnElement[bool]]:
    """The criteria as conditions on a customer's orders grouped together (all must hold)."""

    def days(n: int) -> datetime:
        return now - timedelta(days=n)

    kept = Order.status.not_in(NOT_SPENT)
    conditions: list[ColumnElement[bool]] = []
    if criteria.ordered_within_days is not None:
        conditions.append(func.max(Order.placed_at) >= days(criteria.ordered_within_days))
    if criteria.not_ordered_for_days is not None:
        conditions.append(func.max(Order.placed_at) < days(criteria.not_ordered_for_days))
    if criteria.min_orders is not None:
        counted = func.sum(case((kept, 1), else_=0))
        conditions.append(counted >= criteria.min_orders)
    if (spent := criteria.min_total_spent) is not None:
        in_currency = and_(kept, Order.currency == spent.currency)
        total = func.coalesce(func.sum(case((in_currency, Order.total_minor), else_=0)), 0)
        conditions.append(total >= int(spent.amount * 100))
    if criteria.delivered_within_days is not None:
        conditions.append(func.max(Order.delivered_at) >= days(criteria.delivered_within_days))
    return conditions


async def customers_page(
    session: AsyncSession, started: CampaignStarted, now: datetime, size: int = PAGE
) -> list[str]:
    """Up to ``size`` + 1 customer ids after ``started.after`` the criteria hold for (the one
    more says whether another page follows)."""
    query: Any = (
        select(Order.customer_id)
        .where(Order.merchant_id == started.merchant_id)
        .group_by(Order.customer_id)
        .having(*holds(started.orders, now))
        .order_by(Order.customer_id)
        .limit(size + 1)
    )
    if started.after is not None:
        query = query.where(Order.customer_id > started.after)
    return list(await session.scalars(query))


async def campaign_started(session: AsyncSession, started: CampaignStarted) -> None:
    """Answer one page of the segment: its audience part, and the next page's request."""
    now = started.as_of or clock.now()
    found = await customers_page(session, started, now)
    page, more = found[:PAGE], len(found) > PAGE
    audience = CampaignAudience(
        campaign_id=started.campaign_id,
        merchant_id=started.merchant_id,
        offer=started.offer,
        cards=started.cards,
        customer_ids=page,
        part=started.part,
        parts=None if more else started.part,
    )
    key = str(started.campaign_id)
    messages: list[tuple[Contract, str | None]] = [(audience, key)]
    if more:
        following = {"after": page[-1], "part": started.part + 1, "as_of": now}
        messages.append((started.model_copy(update=following), key))
    await publish_all(session, messages)
