"""The migrations and the models describe the same schema, on every backend."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.contracts.cards import MAX_LINK_TOKEN_LENGTH
from services.core.migrations import alembic_config, upgrade_to_head
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


def test_widening_the_link_keeps_cards_and_what_hangs_on_them(tmp_path: Path) -> None:
    """SQLite rebuilds ``cards`` to widen ``link_token`` (0005_links): the cards, their
    registrations and pass bundles (which cascade on delete) come through whole."""
    database = tmp_path / "passpost.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{database}")
    command.upgrade(alembic_config(settings), "0002")
    now = "2026-12-01 22:00:00"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute(
            "INSERT INTO merchants VALUES"
            " ('shop', 'Shop', 'en', NULL, NULL, '[]', NULL, 'm1', ?, ?)",
            (now, now),
        )
        connection.execute(
            "INSERT INTO cards VALUES ('m1', 'c-1', 'pass.x', NULL, 'en', 'serial', 'auth', ?, 1,"
            " '{}', ?, ?, 0, 'card1')",
            ("h" * 32, now, now),
        )
        connection.execute(
            "INSERT INTO registrations VALUES ('device', 'card1', 'token', ?, ?, 'r1')", (now, now)
        )
        connection.commit()

    upgrade_to_head(settings)

    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT link_token FROM cards").fetchall() == [("h" * 32,)]
        assert connection.execute("SELECT card_id FROM registrations").fetchall() == [("card1",)]
        schema = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'cards'").fetchone()
        assert f"link_token VARCHAR({MAX_LINK_TOKEN_LENGTH})" in schema[0]
