"""The ``db`` queue backend: consumers claim outbox rows directly.

On PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``, so any number of consumer processes share
the work; on SQLite the single-writer lock (``BEGIN IMMEDIATE``) serialises claims. A claim is a
lease: a consumer that dies mid-message leaves it to be claimed again when the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.dbfaults import FailedRounds
from services.core.leases import Lease
from services.core.queue import Message, Subscription
from services.core.queue.apply import BatchApplier
from services.core.queue.models import MESSAGE_COLUMNS, outbox_table

BATCH_SIZE = 64
_CLAIMED = (*MESSAGE_COLUMNS, outbox_table.c.attempts)


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
        self._lease_seconds = lease_seconds
        self._applier = BatchApplier(sessionmaker, max_attempts=max_attempts)
        self._wakeup = asyncio.Event()
        self._failures = FailedRounds("queue", first=poll_interval)
        self._stopping = False
        self._stopped = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self, grace: float) -> None:
        """Take no more batches, and finish the one being applied (within ``grace`` seconds;
        cancelled after that, it hands its messages back)."""
        self._stopping = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._stopped.wait()

    async def run(self, subscriptions: list[Subscription[Any]]) -> None:
        try:
            await self._run(subscriptions)
        finally:
            self._stopped.set()

    async def _run(self, subscriptions: list[Subscription[Any]]) -> None:
        look_first = True
        while not self._stopping:
            # Cleared before the drain: a commit during it wakes the next wait at once.
            self._wakeup.clear()
            pause = self._poll_interval
            try:
                claimed = await self.drain_once(subscriptions, look_first=look_first)
            except Exception as exc:  # the database away: claimed rows wait for their lease
                look_first, pause = True, self._failures.failed(exc)
            else:
                self._failures.succeeded()
                if claimed == BATCH_SIZE:  # a backlog: claim the next batch straight away
                    look_first = False
                    continue
            # A short batch was all that was due: what is committed meanwhile wakes us, so
            # claiming again now would only find nothing (a transaction per batch).
            look_first = not await self._wait(pause)

    async def _wait(self, seconds: float) -> bool:
        """Sleep until woken or ``seconds`` have passed; True if woken: a message was committed,
        so the next claim need not look first."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives with a wake-up, and the queue would then outlive its shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        return self._wakeup.is_set() and not self._stopping

    async def drain_once(
        self, subscriptions: list[Subscription[Any]], *, look_first: bool = True
    ) -> int:
        """Claim one batch and apply it; returns how many messages were claimed.

        ``look_first``: check for due messages without a write lock before claiming (the
        queue skips it when a commit woke it, or behind a backlog)."""
        by_topic = {s.topic: s for s in subscriptions}
        claimed = await self._claim(list(by_topic), look_first=look_first)
        if claimed:
            try:
                # Failures are recorded on their rows, due again after their backoff.
                await self._applier.apply(by_topic, claimed)
            except BaseException:  # cancelled (a shutdown past its grace): hand them back
                await asyncio.shield(self._release([m.id for m in claimed]))
                raise
        return len(claimed)

    async def _release(self, message_ids: list[uuid.UUID]) -> None:
        """End the lease of claimed messages not applied, so another consumer takes them at
        once rather than when the lease runs out (if this fails too, the lease runs out)."""
        with contextlib.suppress(Exception):
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    update(outbox_table)
                    .where(
                        outbox_table.c.message_id.in_(message_ids),
                        outbox_table.c.processed_at.is_(None),
                    )
                    .values(locked_until=None)
                )

    async def _claim(self, topics: list[str], *, look_first: bool = True) -> list[Message]:
        lease = Lease(
            self._sessionmaker,
            outbox_table,
            due=lambda now: (
                outbox_table.c.topic.in_(topics),
                outbox_table.c.processed_at.is_(None),
                outbox_table.c.failed_at.is_(None),
                outbox_table.c.available_at <= now,
            ),
            order_by=outbox_table.c.id,
            returning=_CLAIMED,
            seconds=self._lease_seconds,
            count_attempt=True,
        )
        rows = await lease.claim(BATCH_SIZE, peek=look_first)
        # Applied in the order they were published (RETURNING has none).
        return [
            Message(r.message_id, r.topic, r.key, r.payload, r.created_at, r.attempts)
            for r in sorted(rows, key=lambda r: int(r.id))
        ]
