"""``price_dropped``: the customers who watch a product (``customer.watch`` until
``customer.unwatch``) get its new price on their card when ``price.dropped`` says so, once per
event (the key is the product and the event's id)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.shop_events import CustomerUnwatch, CustomerWatch, PriceDroppedEvent
from services.core.db import dialect_insert
from services.merchants.journeys import JourneySettings, journey_settings
from services.merchants.models import Merchant
from services.passes.issuing import lock_cards
from services.passes.journeys.engine import Composed, Journey, schedule
from services.passes.journeys.models import JourneyStep, ProductWatch
from services.passes.journeys.texts import title_sized
from services.passes.models import Card


async def watch(session: AsyncSession, merchant: Merchant, event: CustomerWatch) -> bool:
    insert = (
        dialect_insert(session)(ProductWatch)
        .values(
            merchant_id=merchant.id,
            product_id=event.data.product_id,
            customer_id=event.customer.id,
            created_at=event.occurred_at,
        )
        .on_conflict_do_nothing()
    )
    await session.execute(insert)
    return True


async def unwatch(session: AsyncSession, merchant: Merchant, event: CustomerUnwatch) -> bool:
    result = await session.execute(
        delete(ProductWatch).where(
            ProductWatch.merchant_id == merchant.id,
            ProductWatch.product_id == event.data.product_id,
            ProductWatch.customer_id == event.customer.id,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def dropped(
    session: AsyncSession, merchant: Merchant, event: PriceDroppedEvent, now: datetime
) -> bool:
    """A step on each watcher's card (those with a card; a watcher without one is left)."""
    watchers = (
        await session.scalars(
            select(ProductWatch.customer_id).where(
                ProductWatch.merchant_id == merchant.id,
                ProductWatch.product_id == event.data.product.id,
            )
        )
    ).all()
    cards = await lock_cards(session, [(merchant.id, customer) for customer in watchers])
    settings = await journey_settings(session, merchant.id, "price_dropped")
    due = max(event.occurred_at + timedelta(minutes=settings.delay_minutes), now)
    data = event.data.model_dump(mode="json")
    scheduled = False
    for customer in watchers:
        card = cards.card_of((merchant.id, customer))
        if card is not None:
            key = f"{event.data.product.id} {event.id}"
            await schedule(
                session, card, "price_dropped", key, due_at=due, data=data, settings=settings
            )
            scheduled = True
    return scheduled


def price(money: dict[str, str]) -> str:
    amount = Decimal(str(money["amount"])).quantize(Decimal("0.01"))
    return f"{amount} {money['currency']}"


async def compose(
    session: AsyncSession, card: Card, step: JourneyStep, settings: JourneySettings, now: datetime
) -> Composed:
    del session, card, settings, now
    product = step.data["product"]
    values = {
        "product": title_sized(product["name"]),
        "price": price(step.data["new_price"]),
        "old_price": price(step.data["old_price"]),
    }
    return Composed(values=values, url=product.get("url"))


JOURNEY = Journey("price_dropped", compose)
