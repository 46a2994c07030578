"""The ``nats`` backend's relay while JetStream is slow to acknowledge (a stand-in JetStream, so
this runs without NATS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.queue import OutboxMessage, publish
from services.core.queue import nats as nats_backend
from services.core.queue.nats import NatsQueue
from tests.core.test_queue import Named
from tests.waiting import eventually


class SlowJetStream:
    """Takes every publish at once and acknowledges none until the test says so."""

    def __init__(self) -> None:
        self.published: list[dict[str, str]] = []
        self.acks = asyncio.Event()
        self.fail = False

    async def add_stream(self, config: object) -> None:
        return None

    async def publish_async(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[None]:
        self.published.append(headers)
        return asyncio.ensure_future(self._ack())

    async def _ack(self) -> None:
        await self.acks.wait()
        if self.fail:
            raise ConnectionError("the ack never came")


class StandInClient:
    def __init__(self, js: SlowJetStream) -> None:
        self._js = js
        self.is_connected = True

    def jetstream(self) -> SlowJetStream:
        return self._js

    async def close(self) -> None:
        self.is_connected = False


@pytest.fixture
def jetstream(monkeypatch: pytest.MonkeyPatch) -> SlowJetStream:
    js = SlowJetStream()

    async def connect(url: str, **options: Any) -> StandInClient:
        return StandInClient(js)

    monkeypatch.setattr(nats_backend.nats, "connect", connect)
    # Long enough that a lock held while waiting would outlast SQLite's busy timeout.
    monkeypatch.setattr(nats_backend, "PUBLISH_ACK_SECONDS", 60.0)
    return js


@pytest.fixture
async def relays(
    sessionmaker: async_sessionmaker[AsyncSession], jetstream: SlowJetStream
) -> AsyncIterator[Callable[[], Awaitable[NatsQueue]]]:
    """Connected queues, one per process, all on the stand-in JetStream."""
    made: list[NatsQueue] = []

    async def relay() -> NatsQueue:
        queue = NatsQueue(sessionmaker, url="nats://stand-in")
        await queue.connect()
        made.append(queue)
        return queue

    yield relay
    for queue in made:
        await queue.close()


Relays = Callable[[], Awaitable[NatsQueue]]


async def _publish(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> None:
    async with sessionmaker() as session:
        for n in range(count):
            publish(session, Named(name=str(n)))
        await session.commit()


async def _unrelayed(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.relayed_at.is_(None))
                .order_by(OutboxMessage.id)
            )
        )


async def test_the_relay_holds_no_lock_while_it_waits_for_acks(
    sessionmaker: async_sessionmaker[AsyncSession], jetstream: SlowJetStream, relays: Relays
) -> None:
    await _publish(sessionmaker, 2)
    relaying = asyncio.create_task((await relays()).relay_once())

    async def both_published() -> bool:
        return len(jetstream.published) == 2

    await eventually(both_published)
    # The rows being published can be written meanwhile: no transaction holds them (nor, on
    # SQLite, the writer lock every commit needs).
    async with sessionmaker() as session, session.begin():
        if session.bind.dialect.name == "postgresql":
            await session.execute(text("SET LOCAL lock_timeout = '5s'"))
        await session.execute(update(OutboxMessage).values(last_error="written meanwhile"))
    assert not relaying.done()
    # Leased, though: another relay does not publish them too.
    assert await (await relays()).relay_once() == 0
    assert len(jetstream.published) == 2

    jetstream.acks.set()
    assert await relaying == 2
    assert await _unrelayed(sessionmaker) == []


async def test_rows_whose_acks_fail_are_relayed_again_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], jetstream: SlowJetStream, relays: Relays
) -> None:
    await _publish(sessionmaker, 3)
    queue = await relays()
    jetstream.fail = True
    jetstream.acks.set()
    with pytest.raises(ConnectionError):
        await queue.relay_once()
    rows = await _unrelayed(sessionmaker)
    assert [(r.relayed_at, r.locked_until) for r in rows] == [(None, None)] * 3

    jetstream.fail = False
    assert await queue.relay_once() == 3
    ids = [headers[nats_backend.MESSAGE_ID_HEADER] for headers in jetstream.published]
    assert ids == [str(r.message_id) for r in rows] * 2, "in order, each time"
    assert await _unrelayed(sessionmaker) == []


async def test_a_relay_stopped_while_it_waits_for_acks_leaves_its_rows_to_the_next(
    sessionmaker: async_sessionmaker[AsyncSession], jetstream: SlowJetStream, relays: Relays
) -> None:
    """A shutdown cancels the relay mid-publish: the process started next (or another relay)
    relays the rows at once, not only once the lease has run out."""
    await _publish(sessionmaker, 2)
    relaying = asyncio.create_task((await relays()).relay_once())

    async def both_published() -> bool:
        return len(jetstream.published) == 2

    await eventually(both_published)
    relaying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relaying
    assert [r.locked_until for r in await _unrelayed(sessionmaker)] == [None, None]

    jetstream.acks.set()
    assert await (await relays()).relay_once() == 2
    assert await _unrelayed(sessionmaker) == []
