"""The loop shared by the push service's workers (APNs and Google): claim, work, record, sleep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)


class Wakeup:
    """Tells a sleeping worker that work was committed in this process."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives with the event, and the worker would then outlive its shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()


class LeasedWorker(ABC):
    """Claims due rows with a lease, works on them outside any transaction, records outcomes.

    Subclasses say what one round is (``deliver_once``); this class runs rounds until stopped,
    sleeping when there was nothing to do, and lets a shutdown finish the round in flight.
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

    @abstractmethod
    async def deliver_once(self) -> int:
        """One round; returns how many items it claimed."""

    async def settle(self) -> None:  # noqa: B027  # a hook: most workers leave nothing behind
        """Finish what a round left running in the background (nothing, unless overridden)."""

    async def run(self) -> None:
        try:
            while not self._stopping:
                self._idle.clear()
                try:
                    if await self.deliver_once():
                        continue
                except Exception as exc:  # the next round may work: a worker never stops
                    log.error(
                        "worker round failed; what it held goes again when its leases run out",
                        extra={"worker": type(self).__name__, "error": repr(exc)[:500]},
                    )
                self._idle.set()
                await self._wakeup.wait(self._poll_interval)
        finally:
            try:
                await self.settle()
            finally:
                self._idle.set()

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
