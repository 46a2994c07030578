"""Scheduled work, declared by each domain next to the rows it looks after.

A ``Job`` runs one batch at a time: it finds due rows through an index (never by scanning every
card), handles at most a batch of them in one transaction and says how many it handled. The
runner calls it again at once while it finds work, then waits its interval, or less when the
clock moves (``services.core.clock``), so a test that moves the clock past a deadline only has to
wait for the state the job leaves. Replicas run the same jobs: a job claims its rows (a
``Lease`` or ``FOR UPDATE SKIP LOCKED``) so two processes never handle the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.clock import clock

log = logging.getLogger(__name__)

JobRun = Callable[[async_sessionmaker[AsyncSession], datetime], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    """``run(sessionmaker, now)`` handles one batch of what is due at ``now`` and returns how
    many rows it handled (0: nothing is due, wait for the next round)."""

    name: str
    every: float
    """Seconds between rounds when nothing is due."""
    run: JobRun


async def run_job(job: Job, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Run ``job`` until cancelled: batches back to back while it finds work, then a pause that
    a move of the clock cuts short. A failing round is logged and retried next round."""
    moved = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(moved.set)

    stop_watching = clock.watch(wake)
    try:
        while True:
            moved.clear()
            try:
                while await job.run(sessionmaker, clock.now()):
                    moved.clear()
            except Exception:
                log.exception("scheduled job failed", extra={"job": job.name})
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a wake-up that
            # arrives with a cancellation and drops the cancellation, and the job then held
            # its process's shutdown forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(job.every):
                    await moved.wait()
    finally:
        stop_watching()
