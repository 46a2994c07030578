"""Retention: what each prune keeps and what goes, on a moved clock, in bounded batches."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.clock import Clock, clock
from services.core.models import utcnow
from services.core.queue import OutboxMessage
from services.core.queue.models import InboxMessage
from services.core.queue.retention import queue_rules
from services.core.retention import Prune, prune
from services.core.settings import Settings
from services.onboarding import Onboarded
from services.orders.connectors.models import ConnectorDelivery
from services.orders.models import Order, OrderEvent
from services.orders.retention import orders_rules
from services.push.models import Delivery, GoogleCallbackNonce, GoogleDelivery
from services.push.retention import push_rules
from tests.factories import api_auth, create_merchant, order_event, post_order_event
from tests.orders.connectors.conftest import connect
from tests.orders.connectors.platforms import post_shopify, shopify_order
from tests.waiting import eventually

DAY = timedelta(days=1)


async def _prune_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    rules: list[Prune],
    now: datetime,
    batch_size: int = 1000,
) -> list[int]:
    """Rounds until one deletes nothing, as the scheduled job runs them: rows per round."""
    rounds = [await prune(sessionmaker, rules, now, batch_size)]
    while rounds[-1]:
        rounds.append(await prune(sessionmaker, rules, now, batch_size))
    return rounds


def _outbox(created: datetime, **state: object) -> OutboxMessage:
    return OutboxMessage(topic="t", payload={}, created_at=created, available_at=created, **state)


async def test_the_queue_keeps_pending_messages_and_the_inbox_outlives_the_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, settings: Settings
) -> None:
    start = utcnow()
    pending = _outbox(start - 365 * DAY)
    applied = _outbox(start, processed_at=start)
    failed = _outbox(start, failed_at=start, attempts=10)
    session.add_all([pending, applied, failed])
    await session.flush()
    record = InboxMessage(consumer="c", message_id=applied.message_id, processed_at=start)
    session.add(record)
    await session.commit()
    rules = queue_rules(settings)

    async def kept() -> tuple[set[int], int]:
        async with sessionmaker() as reader:
            outbox = set(await reader.scalars(select(OutboxMessage.id)))
            inbox = await reader.scalar(select(func.count()).select_from(InboxMessage))
        return outbox, inbox or 0

    await _prune_all(sessionmaker, rules, start + 6.9 * DAY)
    assert await kept() == ({pending.id, applied.id, failed.id}, 1)
    await _prune_all(sessionmaker, rules, start + 7.1 * DAY)  # the outbox's week is over
    assert await kept() == ({pending.id, failed.id}, 1)
    await _prune_all(sessionmaker, rules, start + 14.1 * DAY)  # so is the inbox's fortnight
    assert await kept() == ({pending.id, failed.id}, 0)
    await _prune_all(sessionmaker, rules, start + 30.1 * DAY)  # a month to look at failures
    assert await kept() == ({pending.id}, 0)


def test_the_inbox_may_not_be_kept_shorter_than_the_outbox(settings: Settings) -> None:
    with pytest.raises(ValueError, match="PASSPOST_RETENTION_INBOX_DAYS"):
        Settings.model_validate(
            {**settings.model_dump(), "retention_outbox_days": 20, "retention_inbox_days": 10}
        )


async def test_a_backlog_goes_in_batches_of_the_set_size(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, settings: Settings
) -> None:
    start = utcnow()
    session.add_all([_outbox(start, processed_at=start) for _ in range(7)])
    await session.commit()
    rounds = await _prune_all(sessionmaker, queue_rules(settings)[:1], start + 8 * DAY, 3)
    assert rounds == [3, 3, 1, 0]


async def test_order_history_goes_after_its_period_and_the_order_stays(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop: Onboarded = await create_merchant(session, settings)
    for status in ("confirmed", "shipped"):
        await post_order_event(client, shop.api_key, order_event(status, order_id="A-1"))
    received = await session.scalar(select(func.max(OrderEvent.received_at)))
    assert received is not None
    await session.commit()  # SQLite: no write lock held while the prune runs
    rules = orders_rules(settings)

    async def history() -> int:
        async with sessionmaker() as reader:
            return await reader.scalar(select(func.count()).select_from(OrderEvent)) or 0

    await _prune_all(sessionmaker, rules, received + 399 * DAY)
    assert await history() == 2
    await _prune_all(sessionmaker, rules, received + 401 * DAY)
    assert await history() == 0
    answer = await client.get("/v1/orders/A-1", headers=api_auth(shop))
    assert answer.status_code == 200
    assert answer.json()["status"] == "shipped"
    assert await session.scalar(select(func.count()).select_from(Order)) == 1


async def test_connector_deliveries_go_after_a_month(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shop: Onboarded = await create_merchant(session, settings)
    await connect(session, shop)
    assert (await post_shopify(client, "orders/create", shopify_order())).status_code == 200
    received = await session.scalar(select(func.max(ConnectorDelivery.received_at)))
    assert received is not None
    await session.commit()

    async def kept() -> int:
        async with sessionmaker() as reader:
            deliveries = select(func.count()).select_from(ConnectorDelivery)
            return await reader.scalar(deliveries) or 0

    await _prune_all(sessionmaker, orders_rules(settings), received + 29 * DAY)
    assert await kept() == 1
    await _prune_all(sessionmaker, orders_rules(settings), received + 31 * DAY)
    assert await kept() == 0
    assert (await client.get("/v1/orders/450789469", headers=api_auth(shop))).status_code == 200


async def test_delivery_records_and_callback_nonces_go_after_a_month(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, settings: Settings
) -> None:
    start, card = utcnow(), uuid.uuid4()
    for age in (0, 10):
        created = start - age * DAY
        session.add_all(
            [
                Delivery(
                    card_id=card,
                    version=1,
                    device_library_identifier="d",
                    push_token_suffix="abcdefgh",
                    outcome="delivered",
                    attempt=1,
                    created_at=created,
                ),
                GoogleDelivery(
                    card_id=card, version=1, kind="object", outcome="ok", created_at=created
                ),
                GoogleCallbackNonce(nonce=f"n-{age}", received_at=created),
            ]
        )
    await session.commit()
    tables = [Delivery, GoogleDelivery, GoogleCallbackNonce]

    async def counts() -> list[int]:
        async with sessionmaker() as reader:
            return [await reader.scalar(select(func.count()).select_from(t)) or 0 for t in tables]

    rules = push_rules(settings)
    await _prune_all(sessionmaker, rules, start + 19.9 * DAY)
    assert await counts() == [2, 2, 2]
    await _prune_all(sessionmaker, rules, start + 20.1 * DAY)  # the older's month is over
    assert await counts() == [1, 1, 1]
    await _prune_all(sessionmaker, rules, start + 30.1 * DAY)
    assert await counts() == [0, 0, 0]


@pytest.fixture
def moved_clock() -> Iterator[Clock]:
    yield clock
    clock.reset()


async def test_the_running_services_prune_when_the_clock_passes_the_period(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    moved_clock: Clock,
) -> None:
    """Every service's job is scheduled: the kernel's (inbox) and the push service's (nonces)."""
    start = utcnow()
    session.add_all(
        [
            InboxMessage(consumer="c", message_id=uuid.uuid4(), processed_at=start),
            GoogleCallbackNonce(nonce="n", received_at=start),
        ]
    )
    await session.commit()
    moved_clock.set(start + 40 * DAY)

    async def pruned() -> bool:
        async with sessionmaker() as reader:
            left = [
                await reader.scalar(select(func.count()).select_from(t))
                for t in (InboxMessage, GoogleCallbackNonce)
            ]
        return left == [0, 0]

    await eventually(pruned)
