"""The async engine and sessions; the request dependency owns commit and rollback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Row, Select, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.core.settings import Settings
from services.core.sqlite_driver import DRIVER, SQLiteDialect
from services.core.sqlite_writes import WriteTurns, take_turn

SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY_OPTION = "passpost_read_only"
"""SQLite: no ``BEGIN`` for this connection's work, so each statement reads on its own."""
POOL_SIZE = 20
"""Connections a process keeps, and never more: a request beyond them waits for one.

Overflow connections would be opened and closed per request exactly when the process is
busiest (a new PostgreSQL backend, a new SQLite thread each), which costs more than the wait.
"""
POOL_RECYCLE_SECONDS = 1800
"""Connections are replaced after this long instead of being pinged on every checkout; a
connection the server dropped fails one request, and SQLAlchemy then invalidates the whole pool."""


async def read_rows(
    sessionmaker: async_sessionmaker[AsyncSession], query: Select[Any]
) -> Sequence[Row[Any]]:
    """What ``query`` finds, read without taking SQLite's write lock.

    Background workers poll several times a second; polling with ``BEGIN IMMEDIATE`` would keep
    the single writer lock busy and starve the writers that have real work.
    """
    async with sessionmaker() as session:
        connection = await session.connection(execution_options={READ_ONLY_OPTION: True})
        rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
        await session.rollback()
        return rows


async def any_rows(sessionmaker: async_sessionmaker[AsyncSession], query: Select[Any]) -> bool:
    """Whether ``query`` finds a row (``read_rows``: no write lock)."""
    return bool(await read_rows(sessionmaker, query.limit(1)))


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            make_url(url).set(drivername=f"sqlite+{DRIVER}"),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=POOL_SIZE,
            max_overflow=0,
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url, pool_size=POOL_SIZE, max_overflow=0, pool_recycle=POOL_RECYCLE_SECONDS
    )


def driver_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """What ``asyncpg.connect`` takes to reach the engine's PostgreSQL database, for a connection
    outside the pool (the queue's LISTEN connection lives as long as the process)."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    # The dialect's own options, which it removes before calling asyncpg.
    for option in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        params.pop(option, None)
    return dict(params)


def ensure_wal(cursor: Any) -> None:
    """Put a SQLite database in WAL mode, which the file keeps from then on.

    The switch needs the exclusive lock, and SQLite answers "database is locked" at once, without
    waiting, to the second of two connections switching together (its deadlock guard). Migrations
    switch once, before anything serves, so the pool's connections find WAL and change nothing.
    """
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")


def _configure_sqlite(engine: AsyncEngine) -> None:
    turns = WriteTurns(SQLITE_BUSY_TIMEOUT_MS / 1000)
    assert isinstance(engine.dialect, SQLiteDialect)
    engine.dialect.write_turns = turns

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # aiosqlite opens in autocommit-less mode; we take control of BEGIN ourselves so that
        # a writer takes the lock up front (BEGIN IMMEDIATE) instead of failing on upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        ensure_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION, False):
            return
        dbapi_connection = connection.connection.dbapi_connection
        take_turn(turns, dbapi_connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turns.give_back(dbapi_connection)
            raise


def create_sessionmaker(
    engine: AsyncEngine, settings: Settings
) -> async_sessionmaker[AsyncSession]:
    """Sessions that know the deployment's public base URL (what a card's links start with,
    where work a consumer does in a session writes them: the Google object's)."""
    info = {PUBLIC_BASE_URL: settings.base_url()}
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


PUBLIC_BASE_URL = "passpost.public_base_url"


def public_base_url(session: AsyncSession) -> str:
    """The public base URL of the deployment whose sessionmaker made ``session``."""
    return str(session.info[PUBLIC_BASE_URL])


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


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for work that only reads: each statement in a transaction of its own.

    No BEGIN and COMMIT round trips (PostgreSQL autocommit; no BEGIN on SQLite, where WAL
    readers never wait for the writer). Two statements may see two snapshots: work that writes,
    or needs one snapshot, takes a session instead.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READ_ONLY_OPTION: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def read_connection(request: Request) -> AsyncConnection:
    """``async with read_connection(request) as connection``: Core reads for an endpoint.

    Not a dependency: on the PassKit polling calls FastAPI's per-request cost of a generator
    dependency (a cancel scope, two context managers, its cache key) was a fifth of the CPU.
    """
    engine: AsyncEngine = request.app.state.read_engine
    return engine.connect()


def dialect_insert(session: AsyncSession) -> Callable[..., Any]:
    """``INSERT`` with ``ON CONFLICT``: PostgreSQL's or SQLite's (the same clause in both)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
