"""The ``db`` queue backend: consumers claim outbox rows directly.

On PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``, so any number of consumer processes share
the work; on SQLite the single-writer lock (``BEGIN IMMEDIATE``) serialises claims. A claim is a
lease: a consumer that dies mid-message leaves it to be claimed again when the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.db import any_rows
from services.core.logging import message_id as message_id_var
from services.core.models import utcnow
from services.core.queue import InboxMessage, Message, OutboxMessage, Subscription

log = logging.getLogger(__name__)

BATCH_SIZE = 64
MAX_BACKOFF_SECONDS = 300.0


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter: 1 s, 2 s, 4 s ... capped at five minutes."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempt - 1))  # noqa: S311


class DatabaseQueue:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        poll_interval: float = 0.2,
        lease_seconds: float = 30.0,
        max_attempts: int = 10,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._poll_interval = poll_interval
        self._lease = timedelta(seconds=lease_seconds)
        self._max_attempts = max_attempts
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, subscriptions: list[Subscription]) -> None:
        while True:
            # Cleared before the drain: a commit during it wakes the next wait at once.
            self._wakeup.clear()
            if await self.drain_once(subscriptions):
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval)

    async def drain_once(self, subscriptions: list[Subscription]) -> int:
        """Claim one batch and apply it; returns how many messages were claimed."""
        by_topic = {s.topic: s for s in subscriptions}
        claimed = await self._claim(list(by_topic))
        for message in claimed:
            await self._apply(by_topic[message.topic], message)
        return len(claimed)

    @staticmethod
    def _due(topics: list[str], now: datetime) -> Select[OutboxMessage]:
        return (
            select(OutboxMessage)
            .where(
                OutboxMessage.topic.in_(topics),
                OutboxMessage.processed_at.is_(None),
                OutboxMessage.failed_at.is_(None),
                OutboxMessage.available_at <= now,
                or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until <= now),
            )
            .order_by(OutboxMessage.id)
        )

    async def _claim(self, topics: list[str]) -> list[Message]:
        now = utcnow()
        if not await any_rows(self._sessionmaker, self._due(topics, now)):
            return []
        async with self._sessionmaker() as session, session.begin():
            rows = (
                await session.scalars(
                    self._due(topics, now).limit(BATCH_SIZE).with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                row.locked_until = now + self._lease
                row.attempts += 1
            return [
                Message(
                    row.message_id, row.topic, row.key, row.payload, row.created_at, row.attempts
                )
                for row in rows
            ]

    async def _apply(self, subscription: Subscription, message: Message) -> None:
        token = message_id_var.set(str(message.id))
        try:
            async with self._sessionmaker() as session, session.begin():
                seen = await session.get(InboxMessage, (subscription.consumer, message.id))
                if seen is None:
                    session.add(InboxMessage(consumer=subscription.consumer, message_id=message.id))
                    await subscription.handler(session, message)
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.message_id == message.id)
                    .values(processed_at=utcnow(), locked_until=None, last_error=None)
                )
            outcome = "duplicate" if seen is not None else "processed"
            metrics.QUEUE_MESSAGES.labels(topic=message.topic, outcome=outcome).inc()
            metrics.QUEUE_LAG.labels(topic=message.topic).observe(
                (utcnow() - message.created_at).total_seconds()
            )
        except Exception as exc:  # a handler's failure must not stop the consumer
            await self._record_failure(message, exc)
        finally:
            message_id_var.reset(token)

    async def _record_failure(self, message: Message, exc: Exception) -> None:
        give_up = message.attempt >= self._max_attempts
        log.warning(
            "message failed",
            extra={
                "topic": message.topic,
                "attempt": message.attempt,
                "gave_up": give_up,
                "error": f"{type(exc).__name__}: {exc}"[:500],
            },
            exc_info=exc,
        )
        now = utcnow()
        values = {
            "locked_until": None,
            "last_error": f"{type(exc).__name__}: {exc}"[:2000],
            "available_at": now + timedelta(seconds=retry_delay(message.attempt)),
        }
        if give_up:
            values["failed_at"] = now
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.message_id == message.id).values(**values)
            )
        metrics.QUEUE_MESSAGES.labels(
            topic=message.topic, outcome="failed" if give_up else "retried"
        ).inc()
