"""SQLite: a process's writers take turns in the order they asked, instead of in the busy handler.

SQLite has one write lock per file. A ``BEGIN IMMEDIATE`` that finds it taken sleeps in
SQLite's busy handler (1, 2, 5, 10 ... 100 ms, then 100 ms at a time) and retries, so under
load the writers of one process (requests, the queue's consumers, the workers) do not queue:
whoever retries at the right moment wins, a writer that keeps losing waits seconds and, after
the busy timeout, fails with "database is locked", and the lock lies idle between a commit and
the next sleeper's retry. Within a process the writers instead wait here, first come first
served, and the next one begins the moment the last one's COMMIT or ROLLBACK has returned. The
busy handler is left to what it is for: writers of other processes (``serve --workers N``, a
CLI on the same file).
"""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.exc import OperationalError
from sqlalchemy.util import await_


class WriteTurns:
    """Who of this process may write to the database now, and who asked next.

    A write transaction takes the turn before its ``BEGIN IMMEDIATE`` and gives it back when its
    connection commits, rolls back or closes. Waiting is bounded by the same busy timeout SQLite
    would have waited, and ends in the same error (``database is locked``: a 503 at the edge), so a
    writer that waits on another writer of its own process fails as it did before, not hangs.
    """

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout_seconds = timeout_seconds
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: object | None = None
        self.waiting = 0
        """Writers waiting for their turn now."""

    @property
    def taken(self) -> bool:
        """Whether a transaction of this process holds the turn."""
        return self._holder is not None

    async def take(self, connection: object) -> None:
        """Wait for the turn, for ``connection``'s transaction."""
        lock = self._lock_of_running_loop()
        self.waiting += 1
        try:
            async with asyncio.timeout(self._timeout_seconds):
                await lock.acquire()
        except TimeoutError:
            waited = f"database is locked (waited {self._timeout_seconds:g} s for this process)"
            cause = sqlite3.OperationalError(waited)
            raise OperationalError("BEGIN IMMEDIATE", None, cause) from None
        finally:
            self.waiting -= 1
        self._holder = connection

    def give_back(self, connection: object) -> None:
        """End ``connection``'s turn, if it has it (a rollback after a failed begin has not)."""
        if self._holder is connection and self._lock is not None:
            self._holder = None
            self._lock.release()

    def _lock_of_running_loop(self) -> asyncio.Lock:
        """The lock, made for the loop that runs now (a lock belongs to one event loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop, self._holder = asyncio.Lock(), loop, None
        return self._lock


def take_turn(turns: WriteTurns, dbapi_connection: object) -> None:
    """``WriteTurns.take`` from SQLAlchemy's synchronous event code (the greenlet's await)."""
    await_(turns.take(dbapi_connection))
