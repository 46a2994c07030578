"""Group commit for single order events: concurrent POSTs share one transaction.

One event per request cost a transaction each (BEGIN, five statements, COMMIT), which held one
process to ~250 events/s; ``ingest_events`` takes a group for about the price of one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.errors import PasspostError
from services.core.settings import Settings
from services.merchants.models import Merchant
from services.orders import service
from services.orders.schemas import EventAccepted, OrderEventIn

log = logging.getLogger(__name__)

MAX_GROUP = 200
"""Events in one transaction at most; the rest wait for the next one."""

Outcome = EventAccepted | PasspostError


@dataclass(eq=False)
class _Posted:
    merchant: Merchant
    event: OrderEventIn
    answer: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class EventIntake:
    """Gathers the events posted to this process while its previous group commits, and ingests
    them together, one transaction per group.

    Each request still gets its own outcome (accepted, a duplicate, or refused, as
    ``ingest_events`` decides per event), and only once the group has committed. A group that
    fails (any statement, or its commit) is tried again one event per transaction, so a failure
    fails only the requests it belongs to and no event is answered 202 unless it committed.
    Groups are ingested one at a time: the events of a group are locked in one fixed order
    (merchant, then order id), like a batch, and the next group gathers meanwhile.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._waiting: list[_Posted] = []
        self._ingesting: asyncio.Task[None] | None = None

    async def ingest(self, merchant: Merchant, event: OrderEventIn) -> EventAccepted:
        """One request's event: its outcome, once the group it joined has committed."""
        posted = _Posted(merchant, event)
        self._waiting.append(posted)
        if self._ingesting is None or self._ingesting.done():
            self._ingesting = asyncio.create_task(self._ingest_waiting(), name="order-intake")
        outcome = await posted.answer
        if isinstance(outcome, PasspostError):
            raise outcome
        return outcome

    async def close(self) -> None:
        """Wait for the group being ingested (the server stops taking requests first)."""
        if self._ingesting is not None:
            await asyncio.gather(self._ingesting, return_exceptions=True)

    async def _ingest_waiting(self) -> None:
        await asyncio.sleep(0)  # requests already read in this turn of the loop join the group
        group: list[_Posted] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                await self._ingest_group(group)
        finally:
            # Cancelled (the loop is stopping): nobody is told 202 for what did not commit.
            for posted in (*group, *self._waiting):
                _fail(posted, RuntimeError("the order intake stopped before the commit"))
            self._waiting = []

    async def _ingest_group(self, group: list[_Posted]) -> None:
        try:
            outcomes = await self._ingest_together(group)
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0], exc)
                return
            log.warning(
                "a group of order events failed; trying each alone",
                extra={"events": len(group), "error": type(exc).__name__},
            )
            for posted in group:
                try:
                    (outcome,) = await self._ingest_together([posted])
                except Exception as alone:
                    _fail(posted, alone)
                else:
                    _answer(posted, outcome)
            return
        for posted, outcome in zip(group, outcomes, strict=True):
            _answer(posted, outcome)

    async def _ingest_together(self, group: Sequence[_Posted]) -> list[Outcome]:
        """The group's outcomes in its order, once its one transaction has committed."""
        outcomes: dict[int, Outcome] = {}
        by_merchant = sorted(range(len(group)), key=lambda i: (str(group[i].merchant.id), i))
        async with self._sessionmaker() as session:
            for _, indexes in groupby(by_merchant, key=lambda i: group[i].merchant.id):
                mine = list(indexes)
                merchant = group[mine[0]].merchant
                events = [group[i].event for i in mine]
                done = await service.ingest_events(session, merchant, events, self._settings)
                outcomes.update(zip(mine, done, strict=True))
            await session.commit()
        return [outcomes[i] for i in range(len(group))]


def _answer(posted: _Posted, outcome: Outcome) -> None:
    if not posted.answer.done():  # its request may have been cancelled meanwhile
        posted.answer.set_result(outcome)


def _fail(posted: _Posted, error: BaseException) -> None:
    if not posted.answer.done():
        posted.answer.set_exception(error)
