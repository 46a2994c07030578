"""Leasing due rows: how the queue, its relay and the push workers claim work.

A worker claims a batch of due rows by setting their ``locked_until`` (a lease) and then works on
them outside any transaction; a worker that dies mid-batch leaves its rows to be claimed again
once the lease runs out. Every caller did this the same way, so it is written once, here:

* a read-only peek first (``any_rows``), as workers poll several times a second and a claim on
  SQLite takes the single writer lock (``BEGIN IMMEDIATE``) even when nothing is due;
* then one statement in a short transaction, ``UPDATE ... WHERE key IN (SELECT key ... ORDER BY
  ... LIMIT n FOR UPDATE SKIP LOCKED) RETURNING ...``: on PostgreSQL any number of workers share
  the rows without waiting for each other, on SQLite the writer lock serialises the claims.

``RETURNING`` gives the rows back in no particular order: a caller for whom order matters sorts
them (a column to sort by is in ``returning``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, Table, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.db import any_rows
from services.core.models import utcnow


class Lease:
    """Claims due rows of ``table`` for ``seconds``, in ``order_by`` order, ``limit`` at a time.

    ``due(now)`` gives the conditions that make a row due (the lease adds "not leased now");
    ``returning`` is what a claim gives back of each row, as it is after the claim (so
    ``attempts`` already counts this one when ``count_attempt``). The table needs a
    ``locked_until`` column, and an ``attempts`` one when ``count_attempt``.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        table: Table,
        *,
        due: Callable[[datetime], Sequence[ColumnElement[bool]]],
        order_by: ColumnElement[Any],
        returning: Sequence[ColumnElement[Any]],
        seconds: float,
        count_attempt: bool = False,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._table = table
        self._due = due
        self._order_by = order_by
        self._returning = tuple(returning)
        self._duration = timedelta(seconds=seconds)
        self._count_attempt = count_attempt
        self._key = tuple(table.primary_key.columns)

    def due(self, now: datetime) -> Select[Any]:
        """The keys of the rows due at ``now`` and not leased, in claim order."""
        locked_until = self._table.c.locked_until
        return (
            select(*self._key)
            .where(*self._due(now), or_(locked_until.is_(None), locked_until <= now))
            .order_by(self._order_by)
        )

    async def extend(self, keys: Sequence[tuple[Any, ...]]) -> None:
        """Lease the rows of ``keys`` (primary keys) for another ``seconds``, unless their lease
        was ended (their work recorded): work that takes longer than a lease keeps its rows."""
        if not keys:
            return
        key = self._key[0] if len(self._key) == 1 else tuple_(*self._key)
        held = [k[0] for k in keys] if len(self._key) == 1 else list(keys)
        # SKIP LOCKED: a row that a record or a schedule holds is left to the next renewal,
        # rather than waited for (waits in another order than theirs would deadlock).
        chosen = (
            select(*self._key)
            .where(key.in_(held), self._table.c.locked_until.is_not(None))
            .with_for_update(skip_locked=True)
        )
        extend = (
            update(self._table)
            .where(key.in_(chosen))
            .values(locked_until=utcnow() + self._duration)
        )
        async with self._sessionmaker() as session, session.begin():
            await session.execute(extend)

    async def claim(self, limit: int, *, peek: bool = True) -> Sequence[Row[Any]]:
        """Lease up to ``limit`` due rows and return them (``returning``), in no set order.

        ``peek``: first look for a due row without a write lock, and claim only if there is one
        (a caller behind a backlog skips the look, which costs a query)."""
        now = utcnow()
        if peek and not await any_rows(self._sessionmaker, self.due(now)):
            return []
        chosen = self.due(now).limit(limit).with_for_update(skip_locked=True)
        key = self._key[0] if len(self._key) == 1 else tuple_(*self._key)
        values: dict[str, Any] = {"locked_until": now + self._duration}
        if self._count_attempt:
            values["attempts"] = self._table.c.attempts + 1
        claim = (
            update(self._table).where(key.in_(chosen)).values(**values).returning(*self._returning)
        )
        async with self._sessionmaker() as session, session.begin():
            return (await session.execute(claim)).all()
