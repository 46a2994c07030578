"""The async engine and sessions; the request dependency owns commit and rollback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Select, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as SyncSession

from services.core.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY_OPTION = "passpost_read_only"


async def any_rows(sessionmaker: async_sessionmaker[AsyncSession], query: Select[Any]) -> bool:
    """Whether ``query`` finds a row, without taking SQLite's write lock.

    Background workers poll several times a second; polling with ``BEGIN IMMEDIATE`` would keep
    the single writer lock busy and starve the writers that have real work.
    """
    async with sessionmaker() as session:
        connection = await session.connection(execution_options={READ_ONLY_OPTION: True})
        found = (await connection.execute(query.limit(1))).first() is not None
        await session.rollback()
        return found


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=5
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # aiosqlite opens in autocommit-less mode; we take control of BEGIN ourselves so that
        # a writer takes the lock up front (BEGIN IMMEDIATE) instead of failing on upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the endpoint returns, rolled back when it raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
"""Committed before the response is sent, so a 2xx always means the change is durable."""


_AFTER_COMMIT = "passpost.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits (never on rollback)."""
    callbacks: list[Callable[[], None]] = session.info.setdefault(_AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


@event.listens_for(SyncSession, "after_commit")
def _run_after_commit(session: SyncSession) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@event.listens_for(SyncSession, "after_rollback")
def _drop_after_commit(session: SyncSession) -> None:
    session.info.pop(_AFTER_COMMIT, None)
