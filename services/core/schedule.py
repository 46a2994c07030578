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
from collections.abc import Awaitable, Callable, Sequence
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


class Schedule:
    """The scheduled jobs of one process, each run until the process stops.

    ``stop`` lets every round in flight finish (its transaction commits) before the jobs end;
    only a round still running after the grace period is cancelled. Cancelling a round
    mid-transaction would lose its work, and on SQLite it can leave the task closing its
    connection forever (SQLAlchemy's aiosqlite ``terminate`` races the driver's own stop of
    its thread), which then holds the process's exit."""

    def __init__(self, jobs: Sequence[Job], sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._jobs = list(jobs)
        self._sessionmaker = sessionmaker
        self._stopping = False
        self._pauses: set[asyncio.Event] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> list[asyncio.Task[None]]:
        """One task per job (named ``job-<name>``)."""
        self._tasks = [
            asyncio.create_task(self._run(job), name=f"job-{job.name}") for job in self._jobs
        ]
        return self._tasks

    async def stop(self, grace: float) -> None:
        """End every job after its round in flight, waiting ``grace`` seconds at most (the
        caller cancels what is left)."""
        self._stopping = True
        for pause in self._pauses:
            pause.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)

    async def _run(self, job: Job) -> None:
        """Batches back to back while the job finds work, then a pause that a move of the
        clock (or the stop) cuts short. A failing round is logged and retried next round."""
        moved = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(moved.set)

        stop_watching = clock.watch(wake)
        self._pauses.add(moved)
        try:
            while not self._stopping:
                moved.clear()
                try:
                    while await job.run(self._sessionmaker, clock.now()) and not self._stopping:
                        moved.clear()
                except Exception:
                    log.exception("scheduled job failed", extra={"job": job.name})
                if self._stopping:
                    break
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a wake-up that
                # arrives with a cancellation and drops the cancellation, and the job then held
                # its process's shutdown forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(job.every):
                        await moved.wait()
        finally:
            stop_watching()
            self._pauses.discard(moved)
