"""Retention: rows kept only as long as idempotency and audits need, then pruned in batches.

Each domain declares its rules next to its tables (``Prune``: which rows, by which timestamp,
kept how long) and runs them as a scheduled job (``retention_job``); the kernel does the same
for the queue's outbox and inbox. A round deletes at most ``batch_size`` rows per rule, each
batch in a transaction of its own and found through an index on the timestamp, so a backlog of
months goes in many short transactions, never one huge DELETE holding locks and bloating the
log; the job runs rounds back to back while they find rows (``core/schedule.py``). Replicas
prune side by side: on PostgreSQL a batch skips rows another process has locked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.schedule import Job
from services.core.settings import Settings


@dataclass(frozen=True)
class Prune:
    """One retention rule: a row goes once its ``stamp`` is older than ``days``; a row whose
    stamp is NULL (a message still pending) never does."""

    stamp: Column[datetime]
    days: float

    @property
    def table(self) -> Table:
        table: Table = self.stamp.table
        return table


async def prune_batch(session: AsyncSession, rule: Prune, now: datetime, batch_size: int) -> int:
    """Delete at most ``batch_size`` rows ``rule`` lets go at ``now``; how many went."""
    keys = list(rule.table.primary_key.columns)
    chosen = (
        select(*keys)
        .where(rule.stamp < now - timedelta(days=rule.days))
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    by_key = keys[0].in_(chosen) if len(keys) == 1 else tuple_(*keys).in_(chosen)
    result = await session.execute(
        delete(rule.table).where(by_key).execution_options(synchronize_session=False)
    )
    deleted: int = getattr(result, "rowcount", 0) or 0
    return deleted


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession],
    rules: Sequence[Prune],
    now: datetime,
    batch_size: int,
) -> int:
    """One round: a batch of each rule, a transaction each; the rows deleted in all."""
    total = 0
    for rule in rules:
        async with sessionmaker() as session, session.begin():
            deleted = await prune_batch(session, rule, now, batch_size)
        metrics.PRUNED_ROWS.labels(table=rule.table.name).inc(deleted)
        total += deleted
    return total


def retention_job(name: str, rules: Sequence[Prune], settings: Settings) -> Job:
    """The scheduled job that applies ``rules``: rounds back to back while rows go, then one
    every ``PASSPOST_RETENTION_INTERVAL_SECONDS``."""

    async def run(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
        return await prune(sessionmaker, rules, now, settings.retention_batch_size)

    return Job(name=name, every=settings.retention_interval_seconds, run=run)
