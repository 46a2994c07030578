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

from sqlalchemy import Select, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.db import any_rows
from services.core.logging import message_id as message_id_var
from services.core.models import utcnow
from services.core.queue import InboxMessage, Message, OutboxMessage, Subscription, applying

log = logging.getLogger(__name__)

BATCH_SIZE = 64
MAX_BACKOFF_SECONDS = 300.0


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter: 1 s, 2 s, 4 s ... capped at five minutes."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempt - 1))  # noqa: S311


class _HandlerFailed(Exception):
    def __init__(self, message: Message, error: Exception) -> None:
        super().__init__(str(error))
        self.message = message
        self.error = error


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
        claimed = 0
        while True:
            # Cleared before the drain: a commit during it wakes the next wait at once.
            self._wakeup.clear()
            # Behind a backlog, claim straight away: the read-only look first costs a query.
            if claimed := await self.drain_once(subscriptions, look_first=not claimed):
                continue
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation
            # that arrives with a wake-up, and the queue would then outlive its shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wakeup.wait()

    async def drain_once(
        self, subscriptions: list[Subscription], *, look_first: bool = True
    ) -> int:
        """Claim one batch and apply it; returns how many messages were claimed.

        ``look_first``: check for due messages without a write lock before claiming."""
        by_topic = {s.topic: s for s in subscriptions}
        claimed = await self._claim(list(by_topic), look_first=look_first)
        if claimed:
            await self._apply(by_topic, claimed)
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

    async def _claim(self, topics: list[str], *, look_first: bool = True) -> list[Message]:
        now = utcnow()
        if look_first and not await any_rows(self._sessionmaker, self._due(topics, now)):
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

    async def _apply(self, by_topic: dict[str, Subscription], messages: list[Message]) -> None:
        """Apply a claimed batch in one transaction: one inbox lookup, one bulk inbox insert
        and one outbox update for all of it.

        A handler that fails rolls the whole batch back: its message is recorded as failed (to
        retry later) and every other message is applied again in a transaction of its own, so
        one bad message costs its batch a second pass, never an effect or a lost message. (No
        SAVEPOINT per message: releasing one runs the session's after-commit callbacks early.)
        """
        try:
            done = await self._apply_together(by_topic, messages)
        except _HandlerFailed as failed:
            await self._record_failure(failed.message, failed.error)
            rest = [m for m in messages if m is not failed.message]
        except Exception as exc:  # the batch could not commit: try each message alone
            if len(messages) == 1:
                await self._record_failure(messages[0], exc)
                return
            rest = messages
        else:
            for message, duplicate in done:
                outcome = "duplicate" if duplicate else "processed"
                metrics.QUEUE_MESSAGES.labels(topic=message.topic, outcome=outcome).inc()
                metrics.QUEUE_LAG.labels(topic=message.topic).observe(
                    (utcnow() - message.created_at).total_seconds()
                )
            return
        for message in rest:
            await self._apply(by_topic, [message])

    async def _apply_together(
        self, by_topic: dict[str, Subscription], messages: list[Message]
    ) -> list[tuple[Message, bool]]:
        """Apply ``messages`` in one transaction; (message, was a duplicate) for each."""
        done: list[tuple[Message, bool]] = []
        async with self._sessionmaker() as session, session.begin():
            consumers = {by_topic[m.topic].consumer for m in messages}
            applied = {
                (row.consumer, row.message_id)
                for row in await session.execute(
                    select(InboxMessage.consumer, InboxMessage.message_id).where(
                        InboxMessage.consumer.in_(consumers),
                        InboxMessage.message_id.in_([m.id for m in messages]),
                    )
                )
            }
            applying(
                session,
                [m for m in messages if (by_topic[m.topic].consumer, m.id) not in applied],
            )
            for message in messages:
                subscription = by_topic[message.topic]
                if (subscription.consumer, message.id) in applied:
                    done.append((message, True))
                    continue
                token = message_id_var.set(str(message.id))
                try:
                    await subscription.handler(session, message)
                except Exception as exc:  # a handler's failure must not stop the consumer
                    raise _HandlerFailed(message, exc) from exc
                finally:
                    message_id_var.reset(token)
                applied.add((subscription.consumer, message.id))
                done.append((message, False))
            await self._record_done(session, by_topic, done)
        return done

    @staticmethod
    async def _record_done(
        session: AsyncSession,
        by_topic: dict[str, Subscription],
        done: list[tuple[Message, bool]],
    ) -> None:
        if not done:
            return
        new = [
            {"consumer": by_topic[m.topic].consumer, "message_id": m.id}
            for m, duplicate in done
            if not duplicate
        ]
        if new:
            await session.execute(insert(InboxMessage), new)
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.message_id.in_([m.id for m, _ in done]))
            .values(processed_at=utcnow(), locked_until=None, last_error=None)
        )

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
