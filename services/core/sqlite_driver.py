"""SQLite through aiosqlite, as SQLAlchemy's own dialect does it, with two changes.

- A statement is one trip to the connection's thread: aiosqlite's cursor makes one for the
  cursor, one for the statement, one for its rows and one to close it, each a hand-over to
  the thread and a wake-up of the event loop back (a py-spy of ``serve all`` put a third of
  its samples in the event loop's own work). BENCHMARKS.md, issue 14 session 11, has the A/B.
- The process's write turn (``sqlite_writes.WriteTurns``) is handed on once a transaction has
  ended: only the dialect sees its COMMIT return.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util import EMPTY_DICT

from services.core.sqlite_writes import WriteTurns

DRIVER = "passpost_aiosqlite"
"""The driver name of ``SQLiteDialect`` in SQLAlchemy's registry (``sqlite+passpost_aiosqlite``)."""

_Outcome = tuple[Any, int, int | None, list[Any]]
"""A statement's description, row count, last row id and rows."""


def _run(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    """On the connection's thread: the whole statement, its rows read and its cursor closed."""
    cursor = connection.execute(operation, () if parameters is None else parameters)
    try:
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_many(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    cursor = connection.executemany(operation, parameters)
    try:
        return cursor.description, cursor.rowcount, cursor.lastrowid, []
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement, rows and close take one trip to the connection's thread.

    It holds what the statement left (rows, description, counts); there is no driver cursor
    behind it to close."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # nothing to close: see above
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]  # None before any insert, as sqlite3

    async def _async_soft_close(self) -> None:
        """Nothing to close: the driver's cursor was closed on the thread."""

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(_run, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._trip(_run_many, operation, seq_of_parameters)

    async def _trip(
        self, run: Callable[[sqlite3.Connection, str, Any], _Outcome], operation: Any, params: Any
    ) -> None:
        aiosqlite_connection = self._connection
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await aiosqlite_connection._execute(
                run, aiosqlite_connection._conn, operation, params
            )
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        return _Connection(self, super().connect(*arg, **kw)._connection)


class SQLiteDialect(SQLiteDialect_aiosqlite):
    """aiosqlite, a trip to the thread per statement, handing the write turn on at the end.

    The engine's ``begin`` event takes the turn (``services.core.db``); only the dialect sees the
    COMMIT return, which is when the next writer can have the lock without waiting.
    """

    supports_statement_cache = True
    """Statements compile as aiosqlite's do (SQLAlchemy caches only when a dialect says so)."""
    write_turns: WriteTurns | None = None

    @classmethod
    def import_dbapi(cls) -> _DBAPI:
        return _DBAPI(__import__("aiosqlite"), __import__("sqlite3"))

    def do_commit(self, dbapi_connection: Any) -> None:
        self._then_give_back(super().do_commit, dbapi_connection)

    def do_rollback(self, dbapi_connection: Any) -> None:
        self._then_give_back(super().do_rollback, dbapi_connection)

    def do_close(self, dbapi_connection: Any) -> None:
        self._then_give_back(super().do_close, dbapi_connection)

    def do_terminate(self, dbapi_connection: Any) -> None:
        self._then_give_back(super().do_terminate, dbapi_connection)

    def _then_give_back(self, end: Callable[[Any], None], connection: Any) -> None:
        """End the transaction (or the connection), then hand the turn on, whatever happened."""
        try:
            end(connection)
        finally:
            if self.write_turns is not None:
                # Commit and rollback get the pool's proxy, close and terminate the connection.
                self.write_turns.give_back(getattr(connection, "dbapi_connection", connection))


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect")
