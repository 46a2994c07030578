"""PostgreSQL: a commit in one process wakes the consumers of another at once (LISTEN/NOTIFY).

Two engines stand for two processes. The consumer's poll interval is far longer than the tests
wait, so a message can only arrive in time through the notification.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core.db import create_engine, create_sessionmaker
from services.core.queue import Subscription, publish, publish_all
from services.core.queue.db import DatabaseQueue
from services.core.queue.notify import APPLICATION_NAME, ChannelListener, CommitListener
from services.core.settings import Settings
from services.passes.apple import pass_cache
from tests.core.test_queue import Named
from tests.statements import statements_of
from tests.waiting import eventually

POLL_SECONDS = 30.0
WITHIN_SECONDS = 5.0
"""Well below the poll: only a notification delivers this fast."""


@dataclass
class Consumer:
    """A queue on an engine of its own, woken only by its poll and its listener."""

    seen: list[str]
    wakes: list[None]
    listener: CommitListener


@pytest.fixture
async def consumer(engine: AsyncEngine, settings: Settings) -> AsyncIterator[Consumer]:
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite runs in one process")
    other_engine = create_engine(settings)
    queue = DatabaseQueue(create_sessionmaker(other_engine, settings), poll_interval=POLL_SECONDS)
    seen: list[str] = []
    wakes: list[None] = []

    async def record(_session: AsyncSession, message: Named) -> None:
        seen.append(message.name)

    def wake() -> None:
        wakes.append(None)
        queue.wake()

    # No origin ignored: both "processes" share this one's.
    listener = CommitListener(other_engine, ["test.topic"], wake, ignore_origin=None)
    tasks = [
        asyncio.create_task(queue.run([Subscription("tester", Named, record)])),
        asyncio.create_task(listener.run()),
    ]
    async with asyncio.timeout(WITHIN_SECONDS):
        await listener.listening.wait()
    try:
        yield Consumer(seen, wakes, listener)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await other_engine.dispose()


def _arrived(consumer: Consumer, name: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return name in consumer.seen

    return check


async def _published(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> None:
    async with sessionmaker() as session:
        publish(session, Named(name=name))
        await session.commit()


async def test_a_commit_wakes_a_consumer_on_another_engine_before_its_poll(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer
) -> None:
    for name in ("first", "second"):
        await _published(sessionmaker, name)
        await eventually(_arrived(consumer, name), WITHIN_SECONDS)
    async with sessionmaker() as session:
        await publish_all(session, [(Named(name="bulk"), None)])
        await session.commit()
    await eventually(_arrived(consumer, "bulk"), WITHIN_SECONDS)
    assert consumer.seen == ["first", "second", "bulk"]


async def test_a_rolled_back_publish_wakes_nobody(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer
) -> None:
    consumer.wakes.clear()  # the one on connecting
    async with sessionmaker() as session:
        publish(session, Named(name="lost"))
        await session.flush()
        await session.rollback()
    await _published(sessionmaker, "kept")
    await eventually(_arrived(consumer, "kept"), WITHIN_SECONDS)
    # Notifications arrive in commit order: had the rollback sent one, it would be here too.
    assert len(consumer.wakes) == 1
    assert consumer.seen == ["kept"]


async def test_a_publish_inside_a_savepoint_notifies_when_the_whole_transaction_commits(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer
) -> None:
    async with sessionmaker() as session:
        async with session.begin_nested():
            publish(session, Named(name="nested"))
        await session.commit()
    await eventually(_arrived(consumer, "nested"), WITHIN_SECONDS)


async def test_a_commit_sends_all_its_notifications_in_one_statement(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], consumer: Consumer
) -> None:
    """A consumer's batch publishes and changes cards: its queue wake-up and its cards' cache
    notifications go in one round trip, and each listener hears its own."""
    heard: list[tuple[str, str]] = []
    cards = ChannelListener(
        engine,
        [pass_cache.CHANNEL],
        lambda channel, payload: heard.append((channel, payload)),
        lambda: None,
        name="test card listener",
        meanwhile="-",
    )
    listening = asyncio.create_task(cards.run())
    try:
        async with asyncio.timeout(WITHIN_SECONDS):
            await cards.listening.wait()
        with statements_of(engine) as statements:
            async with sessionmaker() as session:
                publish(session, Named(name="with cards"))
                pass_cache.forget_at_commit(session, "pass.test", "s-1")
                pass_cache.forget_at_commit(session, "pass.test", "s-2")
                await session.commit()
        await eventually(_arrived(consumer, "with cards"), WITHIN_SECONDS)
        await eventually(lambda: len(heard) == 2, WITHIN_SECONDS)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    assert len([s for s in statements if "pg_notify" in s]) == 1
    assert sorted(heard) == [
        (pass_cache.CHANNEL, pass_cache.card_key("pass.test", "s-1")),
        (pass_cache.CHANNEL, pass_cache.card_key("pass.test", "s-2")),
    ]


async def test_the_listener_reconnects_when_its_connection_is_terminated(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, consumer: Consumer
) -> None:
    async with engine.connect() as connection:
        terminated = await connection.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
    assert terminated == 1

    async def reconnected() -> bool:
        return consumer.listener.connections == 2 and consumer.listener.listening.is_set()

    await eventually(reconnected, WITHIN_SECONDS)
    await _published(sessionmaker, "after reconnect")
    await eventually(_arrived(consumer, "after reconnect"), WITHIN_SECONDS)


async def test_the_app_listens_on_postgresql_only(app: FastAPI, engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        assert not hasattr(app.state, "queue_listener")
        return
    listener: CommitListener = app.state.queue_listener
    async with asyncio.timeout(WITHIN_SECONDS):
        await listener.listening.wait()
