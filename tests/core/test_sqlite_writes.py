"""SQLite: the writers of one process take turns, first come first served, and always hand on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core import db
from services.core.db import create_engine, create_sessionmaker, read_only, read_rows
from services.core.dbfaults import DatabaseFault, database_fault
from services.core.settings import Settings
from services.core.sqlite_driver import SQLiteDialect
from services.core.sqlite_writes import WriteTurns
from tests.waiting import eventually

WITHIN_SECONDS = 10.0


@pytest.fixture
def sqlite_settings(settings: Settings, tmp_path: Path) -> Settings:
    """A database file of the test's own: the table below is no part of the schema."""
    if not settings.is_sqlite:
        pytest.skip("the write lock is SQLite's")
    return settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{tmp_path}/turns.db"})


async def _engine_with_table(settings: Settings) -> AsyncEngine:
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE turns_seen (id INTEGER PRIMARY KEY, who TEXT)"))
    return engine


@pytest.fixture
async def sqlite_engine(sqlite_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = await _engine_with_table(sqlite_settings)
    yield engine
    await engine.dispose()


def _turns(engine: AsyncEngine) -> WriteTurns:
    assert isinstance(engine.dialect, SQLiteDialect)
    assert engine.dialect.write_turns is not None
    return engine.dialect.write_turns


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession],
    who: str,
    then: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Write a row, then await ``then`` inside the transaction (raising rolls it back)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(text("INSERT INTO turns_seen (who) VALUES (:who)"), {"who": who})
        if then is not None:
            await then()


async def _written(engine: AsyncEngine) -> list[str]:
    """What was committed, read without a turn (WAL readers never wait for the writer)."""
    async with read_only(engine).connect() as connection:
        rows = await connection.execute(text("SELECT who FROM turns_seen ORDER BY id"))
        return [who for (who,) in rows]


async def _fail() -> None:
    raise ZeroDivisionError


async def test_writers_begin_in_the_order_they_asked_once_the_writer_before_commits(
    sqlite_engine: AsyncEngine, sqlite_settings: Settings
) -> None:
    sessionmaker = create_sessionmaker(sqlite_engine, sqlite_settings)
    turns = _turns(sqlite_engine)
    release = asyncio.Event()
    first = asyncio.create_task(_write(sessionmaker, "first", then=release.wait))
    await eventually(lambda: turns.waiting == 0 and turns.taken, WITHIN_SECONDS)
    writers = []
    for n in range(5):
        writers.append(asyncio.create_task(_write(sessionmaker, f"w{n}")))
        await eventually(lambda n=n: turns.waiting == n + 1, WITHIN_SECONDS)
    assert await read_rows(sessionmaker, select(text("1"))) == [(1,)]  # a read takes no turn
    assert await _written(sqlite_engine) == []
    release.set()
    await asyncio.gather(first, *writers)
    assert await _written(sqlite_engine) == ["first", "w0", "w1", "w2", "w3", "w4"]
    assert not turns.taken


async def test_a_failed_a_cancelled_or_a_dropped_writer_hands_its_turn_on(
    sqlite_engine: AsyncEngine, sqlite_settings: Settings
) -> None:
    sessionmaker = create_sessionmaker(sqlite_engine, sqlite_settings)
    turns = _turns(sqlite_engine)

    with pytest.raises(ZeroDivisionError):
        await _write(sessionmaker, "failed", then=_fail)
    assert not turns.taken

    holder = asyncio.create_task(_write(sessionmaker, "cancelled", then=asyncio.Event().wait))
    await eventually(lambda: turns.taken, WITHIN_SECONDS)
    waiting = asyncio.create_task(_write(sessionmaker, "after the cancelled"))
    await eventually(lambda: turns.waiting == 1, WITHIN_SECONDS)
    holder.cancel()
    await asyncio.wait_for(waiting, WITHIN_SECONDS)

    async with sqlite_engine.connect() as connection:
        await connection.begin()
        await connection.execute(text("INSERT INTO turns_seen (who) VALUES ('dropped')"))
        assert turns.taken
        await connection.invalidate()
    await asyncio.wait_for(_write(sessionmaker, "after the dropped"), WITHIN_SECONDS)
    assert await _written(sqlite_engine) == ["after the cancelled", "after the dropped"]


async def test_waiting_for_the_turn_past_the_busy_timeout_is_a_locked_database(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    engine = await _engine_with_table(sqlite_settings)
    sessionmaker = create_sessionmaker(engine, sqlite_settings)
    release = asyncio.Event()
    holder = asyncio.create_task(_write(sessionmaker, "first", then=release.wait))
    await eventually(lambda: _turns(engine).taken, WITHIN_SECONDS)
    with pytest.raises(OperationalError) as waited:
        await _write(sessionmaker, "too late")
    assert database_fault(waited.value) is DatabaseFault.locked
    release.set()
    await holder
    await _write(sessionmaker, "in time")
    assert await _written(engine) == ["first", "in time"]
    await engine.dispose()
