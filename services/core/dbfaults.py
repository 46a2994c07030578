"""Which database errors mean "the database cannot serve now", and why, in a word.

Those are operational faults (a full disk, SQLite's write lock still held after the busy
timeout, PostgreSQL unreachable, restarting or out of connections): the request was fine and
may succeed a little later, so the service answers 503 with ``Retry-After`` instead of a 500,
background workers back off and keep going, and ``/readyz`` says so. Everything else a
database raises (a constraint, a bad statement) is a bug and stays a 500.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from enum import StrEnum
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

DRIVER_ERRORS = (DBAPIError, PoolTimeout, ConnectionError, TimeoutError, socket.gaierror)
"""What using the database may raise (a driver's connect raises OS errors unwrapped)."""
log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a 503 for a database fault asks the client to wait."""


class DatabaseFault(StrEnum):
    full = "full"
    locked = "locked"
    read_only = "read_only"
    unreachable = "unreachable"
    overloaded = "overloaded"
    not_migrated = "not_migrated"
    unavailable = "unavailable"


_SQLITE_MESSAGES = {
    "database or disk is full": DatabaseFault.full,
    "database is locked": DatabaseFault.locked,
    "database table is locked": DatabaseFault.locked,
    "attempt to write a readonly database": DatabaseFault.read_only,
    "unable to open database file": DatabaseFault.unreachable,
    "no such table": DatabaseFault.not_migrated,
}
_SQLSTATE_CLASSES = {
    "08": DatabaseFault.unreachable,  # connection exception
    "53": DatabaseFault.overloaded,  # insufficient resources (53100, disk full: below)
    "57": DatabaseFault.unreachable,  # operator intervention: shut down, starting up
    "25": DatabaseFault.read_only,  # 25006: a read-only transaction (a hot standby)
}
_SQLSTATES = {
    "53100": DatabaseFault.full,
    "42P01": DatabaseFault.not_migrated,  # undefined table
    "3D000": DatabaseFault.unreachable,  # no such database
}

DESCRIPTIONS = {
    DatabaseFault.full: "the database's disk is full",
    DatabaseFault.locked: "the database is locked by another writer",
    DatabaseFault.read_only: "the database is read-only (check the file's and its "
    "directory's permissions, or that the server is not a standby)",
    DatabaseFault.unreachable: "the database cannot be reached",
    DatabaseFault.overloaded: "the database is out of connections or resources",
    DatabaseFault.not_migrated: "the database has no schema yet; run `passpost migrate`",
    DatabaseFault.unavailable: "the database is unavailable",
}


def database_fault(exc: BaseException) -> DatabaseFault | None:
    """The operational fault ``exc`` is, or None when it is not one (then it is a bug)."""
    if isinstance(exc, PoolTimeout):
        return DatabaseFault.overloaded
    if isinstance(exc, DRIVER_ERRORS[2:]):
        return DatabaseFault.unreachable  # raised by the driver's connect, unwrapped
    if not isinstance(exc, DBAPIError):
        return None
    message = str(exc.orig).lower()
    for known, fault in _SQLITE_MESSAGES.items():
        if known in message:
            return fault
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    if by_state := _SQLSTATES.get(state) or _SQLSTATE_CLASSES.get(state[:2]):
        return by_state
    if isinstance(exc.orig, OSError) or isinstance(getattr(exc.orig, "__cause__", None), OSError):
        return DatabaseFault.unreachable
    if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
        return DatabaseFault.unavailable
    return None


def describe(exc: BaseException) -> str:
    """What an operator reads: the fault, and the driver's own words."""
    fault = database_fault(exc)
    cause = (str(getattr(exc, "orig", None) or exc) or type(exc).__name__).splitlines()[0]
    if fault is None:
        return f"database error: {cause}"
    return f"{DESCRIPTIONS[fault]} ({cause})"


READY_TIMEOUT_SECONDS = 2.0
"""How long ``/readyz`` waits for the database: a load balancer's probe must not hang."""
MIN_FREE_BYTES = 16 * 1024 * 1024
"""SQLite: less free space than this on the database's file system is reported as full."""


async def database_ready(engine: AsyncEngine) -> DatabaseFault | None:
    """None when the database answers a cheap query in time and has room to write; else why not.

    ``SELECT 1`` answers on a full disk too: on SQLite the file system's free space and the
    file's page limit are looked at as well (PostgreSQL's disk is its server's to watch).
    """
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            if engine.dialect.name == "sqlite":
                return await _sqlite_room(connection, engine.url.database)
    except TimeoutError:
        return DatabaseFault.unreachable
    except Exception as exc:  # not ready, whatever it is: say which
        return database_fault(exc) or DatabaseFault.unavailable
    return None


async def _sqlite_room(connection: AsyncConnection, database: str | None) -> DatabaseFault | None:
    pages = (await connection.execute(text("PRAGMA page_count"))).scalar_one()
    limit = (await connection.execute(text("PRAGMA max_page_count"))).scalar_one()
    unused = (await connection.execute(text("PRAGMA freelist_count"))).scalar_one()
    if pages >= limit and unused == 0:
        return DatabaseFault.full
    if database and database != ":memory:":
        disk = os.statvfs(Path(database).parent)
        if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
            return DatabaseFault.full
    return None


class FailedRounds:
    """A background loop's failed rounds: logged, and how long to pause before the next.

    A database fault is logged in a line when it starts and when it ends ("recovered"), not
    once per round, so an outage does not flood the log; anything else is a bug and is logged
    with its traceback every time. The pause doubles from ``first`` up to ``longest``, so the
    loop neither spins against a database that is down nor waits long once it is back.
    """

    def __init__(self, loop: str, *, first: float, longest: float = 5.0) -> None:
        self._loop = loop
        self._first = first
        self._longest = longest
        self._failed = 0
        self._fault: DatabaseFault | None = None

    def failed(self, exc: Exception) -> float:
        """Log ``exc`` as fitting and return the pause before the next round."""
        fault = database_fault(exc)
        if fault is None:
            log.exception("%s failed; trying again", self._loop)
        elif fault != self._fault:
            log.warning(
                "%s paused: database unavailable",
                self._loop,
                extra={"reason": fault.value, "error": describe(exc)},
            )
        self._fault = fault
        self._failed += 1
        return float(min(self._longest, self._first * 2 ** (self._failed - 1)))

    def succeeded(self) -> None:
        if self._fault is not None:
            log.warning("%s recovered: the database answers again", self._loop)
        self._failed, self._fault = 0, None


async def check_writable(session: AsyncSession) -> None:
    """Raise the database's own error now if it takes no writes (a read-only file, a standby):
    at start, before anything is served, rather than on the first request that writes.

    The statement rewrites the schema's version as it is: a write that changes nothing.
    """
    await session.execute(text("UPDATE alembic_version SET version_num = version_num"))
