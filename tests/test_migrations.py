"""The migrations and the models describe the same schema, on every backend."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.migrations import upgrade_to_head
from services.core.settings import Settings
from services.models import Base


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


def test_migrated_sqlite_file_is_already_in_wal_mode(tmp_path: Path) -> None:
    """The first connections of a serving process must find WAL: two of them switching at once
    get "database is locked" from SQLite at once, whatever the busy timeout."""
    database = tmp_path / "passpost.db"
    upgrade_to_head(Settings(database_url=f"sqlite+aiosqlite:///{database}"))

    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
