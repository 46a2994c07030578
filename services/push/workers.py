"""The loop shared by the push service's workers (APNs and Google): claim, work, record, sleep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.dbfaults import FailedRounds
from services.core.leases import Lease

log = logging.getLogger(__name__)


class Wakeup:
    """Tells a sleeping worker that work was committed in this process."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        """Forget earlier wake-ups: a worker about to claim sees what they announced."""
        self._event.clear()

    @property
    def woken(self) -> bool:
        """Work was committed since the last ``clear`` (or ``wait``)."""
        return self._event.is_set()

    async def wait(self, seconds: float) -> bool:
        """Sleep until woken or ``seconds`` have passed; True if woken."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives with the event, and the worker would then outlive its shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        woken = self._event.is_set()
        self._event.clear()
        return woken


class LeasedWorker(ABC):
    """Claims due rows with a lease, works on them outside any transaction, records outcomes.

    Subclasses say what one round is (``deliver_once``); this class runs rounds until stopped,
    sleeping when there was nothing to do, and lets a shutdown finish the round in flight. A
    round that fails (the database unreachable, say) is followed by another after a pause: a
    worker outlives an outage, and what it had leased is claimed again once the leases end.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        wakeup: Wakeup,
        *,
        batch_size: int,
        max_attempts: int,
        poll_interval: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._wakeup = wakeup
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._poll_interval = poll_interval
        self._stopping = False
        self._idle = asyncio.Event()
        self._failures = FailedRounds(type(self).__name__, first=poll_interval)
        self.more_due = False
        """The last claim took as many rows as it asked for: more may be due at once."""

    @abstractmethod
    async def deliver_once(self, *, look_first: bool = True) -> int:
        """One round; returns how many items it claimed.

        ``look_first``: peek for due rows before claiming (``Lease.claim``); the worker skips it
        when it knows work is there. A round that claims all it asked for sets ``more_due``."""

    async def _claim_rows(self, lease: Lease, limit: int, look_first: bool) -> Sequence[Row[Any]]:
        """``lease.claim`` for a round: no peek when the last claim was full (more is due), and
        ``more_due`` set from what this one took."""
        rows = await lease.claim(limit, peek=look_first and not self.more_due)
        self.more_due = len(rows) == limit
        return rows

    async def settle(self) -> None:  # noqa: B027  # a hook: most workers leave nothing behind
        """Finish what a round left running in the background (nothing, unless overridden)."""

    async def run(self) -> None:
        """Rounds until stopped. After a short claim (all that was due) the worker claims again
        only when woken or at the next poll: claiming at once would find nothing, at the
        price of a transaction per round. Woken by a commit, it claims without peeking."""
        look_first = True
        try:
            while not self._stopping:
                self._idle.clear()
                self._wakeup.clear()  # from now on a commit wakes the next wait at once
                try:
                    more = await self._round(look_first)
                except Exception as exc:  # the database away: what is leased goes again later
                    self._idle.set()
                    await self._wakeup.wait(self._failures.failed(exc))
                    look_first = True
                    continue
                self._failures.succeeded()
                if more:
                    look_first = False
                    continue
                self._idle.set()
                look_first = not await self._wakeup.wait(self._poll_interval)
        finally:
            try:
                await self.settle()
            finally:
                self._idle.set()

    async def _round(self, look_first: bool) -> bool:
        """One round, settled unless more is due now; True if the next should follow at once
        (its claim was full, or a commit woke the worker meanwhile)."""
        worked = await self.deliver_once(look_first=look_first)
        if worked and (self.more_due or self._wakeup.woken):
            return True
        if worked:
            await self.settle()
        return False

    async def stop(self, grace: float) -> None:
        """Finish and record the round in flight and what it left running, so a restart does
        none of it again."""
        self._stopping = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning("work still in flight at shutdown; its leases will expire")
