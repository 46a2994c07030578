"""Waiting for work the queue does in the background, bounded in time.

Wait for a state, then count: a count taken after a fixed wait passes whenever the work is
slower than the wait, and misses whatever comes after it.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.queue import OutboxMessage
from services.passes.models import Card
from services.push.models import PushTarget


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], seconds: float = 30.0
) -> None:
    """Poll ``check`` (a condition, or a coroutine reading the database or an HTTP answer) until
    it holds; fail with TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not await _holds(check):  # noqa: ASYNC110  (polling: no event to wait on)
            await asyncio.sleep(0.05)


async def _holds(check: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> bool:
    held = check()
    return await held if inspect.isawaitable(held) else held


async def queue_drained(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Every message published so far was applied by its consumer (or given up on)."""
    waiting = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.processed_at.is_(None), OutboxMessage.failed_at.is_(None))
    )
    async with sessionmaker() as session:
        return await session.scalar(waiting) == 0


async def relayed(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """The ``nats`` backend's relay has handed every message published so far to JetStream."""
    waiting = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.relayed_at.is_(None),
            OutboxMessage.processed_at.is_(None),
            OutboxMessage.failed_at.is_(None),
        )
    )
    async with sessionmaker() as session:
        return await session.scalar(waiting) == 0


async def nothing_to_push(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """The queue is drained and no device waits for a push: every push due was sent (and the
    stand-in recorded it before the sender recorded the delivery)."""
    if not await queue_drained(sessionmaker):
        return False
    due = (
        select(func.count())
        .select_from(PushTarget)
        .where(PushTarget.status == "active", PushTarget.wanted_version > PushTarget.sent_version)
    )
    async with sessionmaker() as session:
        return await session.scalar(due) == 0


async def pushed(
    sessionmaker: async_sessionmaker[AsyncSession], card_id: uuid.UUID, devices: int
) -> bool:
    """Nothing is left to push, and exactly ``devices`` devices were sent the card's version."""
    if not await nothing_to_push(sessionmaker):
        return False
    version = select(Card.version).where(Card.id == card_id).scalar_subquery()
    reached = (
        select(func.count())
        .select_from(PushTarget)
        .where(PushTarget.card_id == card_id, PushTarget.sent_version == version)
    )
    async with sessionmaker() as session:
        return await session.scalar(reached) == devices


async def topic_drained(sessionmaker: async_sessionmaker[AsyncSession], topic: str) -> bool:
    """Every ``topic`` message published so far was applied (a process about to stop that
    consumes it must not stop mid-batch: the batch's lease would hold its rows a while)."""
    waiting = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.topic == topic,
            OutboxMessage.processed_at.is_(None),
            OutboxMessage.failed_at.is_(None),
        )
    )
    async with sessionmaker() as session:
        return await session.scalar(waiting) == 0
