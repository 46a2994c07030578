"""Shoptet's orders, fetched in the background: the job behind ``order:create/update``.

A Shoptet delivery is recorded with ``fetch_due_at`` (now); each round of the job takes up to
``BATCH`` due deliveries through ``ix_connector_deliveries_fetch_due_at``, leases them (their
due time moved ``LEASE`` ahead, so a process that dies mid-fetch leaves them to the next
round), fetches outside any transaction (the shop's statuses first, once per merchant), then
applies each in a transaction of its own. A failed fetch is tried again after ``backoff``
(30 s doubling to an hour) and given up as ``failed`` after ``MAX_ATTEMPTS``. All on the
clock (``core/clock.py``): tests move it instead of waiting.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.db import any_rows
from services.core.schedule import Job
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.orders.connectors import shoptet
from services.orders.connectors.common import Mapped, Outcome, Platform
from services.orders.connectors.models import Connector, ConnectorDelivery
from services.orders.connectors.service import apply_mapped, finish

BATCH = 20
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 10
TIMEOUT = 10.0


def backoff(attempts: int) -> timedelta:
    """How long after the ``attempts``-th failed fetch to try again."""
    return timedelta(seconds=min(3600, 30 * 2 ** (attempts - 1)))


def shoptet_fetch_job(settings: Settings) -> Job:
    async def run(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
        return await fetch_due(sessionmaker, settings, now)

    return Job(name="connectors.shoptet_fetch", every=5.0, run=run)


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery_id: uuid.UUID
    merchant_id: uuid.UUID
    code: str
    token: str
    statuses: dict[str, Any] | None


def _due(now: datetime) -> Any:
    return select(ConnectorDelivery.id).where(
        ConnectorDelivery.fetch_due_at.is_not(None), ConnectorDelivery.fetch_due_at <= now
    )


async def fetch_due(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> int:
    """One round: the due deliveries fetched and applied; how many were handled."""
    if not await any_rows(sessionmaker, _due(now)):
        return 0
    claimed = await _claim(sessionmaker, now)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for item in claimed:
            await _fetch_and_apply(sessionmaker, client, settings, item, now)
    return len(claimed)


async def _claim(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> list[_Claimed]:
    chosen = (
        _due(now)
        .order_by(ConnectorDelivery.fetch_due_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    async with sessionmaker() as session, session.begin():
        ids = (await session.scalars(chosen)).all()
        if not ids:
            return []
        await session.execute(
            update(ConnectorDelivery)
            .where(ConnectorDelivery.id.in_(ids))
            .values(fetch_due_at=now + LEASE)
        )
        rows = await session.execute(
            select(
                ConnectorDelivery.id,
                ConnectorDelivery.merchant_id,
                ConnectorDelivery.order_ref,
                Connector.api_token,
                Connector.shop_statuses,
            )
            .join(
                Connector,
                (Connector.merchant_id == ConnectorDelivery.merchant_id)
                & (Connector.platform == Platform.shoptet.value),
            )
            .where(ConnectorDelivery.id.in_(ids))
        )
        return [_Claimed(r[0], r[1], r[2] or "", r[3] or "", r[4]) for r in rows]


async def _fetch_and_apply(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    settings: Settings,
    item: _Claimed,
    now: datetime,
) -> None:
    base = settings.shoptet_api_url.rstrip("/")
    statuses = item.statuses
    try:
        if statuses is None:
            statuses = await shoptet.fetch_statuses(client, base, item.token)
        order = await shoptet.fetch_order(client, base, item.token, item.code)
    except shoptet.FetchFailed as failure:
        await _failed(sessionmaker, item, str(failure), now)
        return
    async with sessionmaker() as session, session.begin():
        delivery = await session.get(ConnectorDelivery, item.delivery_id, with_for_update=True)
        if delivery is None or delivery.outcome != Outcome.pending.value:
            return
        connector, merchant = await _owner(session, item.merchant_id)
        if connector.shop_statuses is None:
            connector.shop_statuses = statuses
        mapped: Mapped = shoptet.to_event(order, statuses, connector.status_map, now)
        await apply_mapped(session, merchant, delivery, mapped, settings)


async def _owner(session: AsyncSession, merchant_id: uuid.UUID) -> tuple[Connector, Merchant]:
    connector = (
        await session.scalars(
            select(Connector).where(
                Connector.merchant_id == merchant_id, Connector.platform == Platform.shoptet.value
            )
        )
    ).one()
    return connector, await session.get_one(Merchant, merchant_id)


async def _failed(
    sessionmaker: async_sessionmaker[AsyncSession], item: _Claimed, reason: str, now: datetime
) -> None:
    """Another attempt counted: tried again after the backoff, or given up."""
    async with sessionmaker() as session, session.begin():
        delivery = await session.get(ConnectorDelivery, item.delivery_id, with_for_update=True)
        if delivery is None or delivery.outcome != Outcome.pending.value:
            return
        delivery.attempts += 1
        if delivery.attempts >= MAX_ATTEMPTS:
            finish(session, delivery, Outcome.failed, f"{reason} ({delivery.attempts} attempts)")
        else:
            delivery.reason = reason
            delivery.fetch_due_at = now + backoff(delivery.attempts)
