"""The migrations and the models describe the same schema, on every backend."""

from __future__ import annotations

import json
import sqlite3
import uuid
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
    """SQLite rebuilds ``cards`` to widen ``link_token`` (0003): the cards, their
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


def test_0005_fills_what_segments_ask_of_the_orders_kept(tmp_path: Path) -> None:
    """Orders from before the offers: their total and delivery come from what was kept."""
    database = tmp_path / "passpost.db"
    config = alembic_config(Settings(database_url=f"sqlite+aiosqlite:///{database}"))
    command.upgrade(config, "0002")
    merchant, delivered, open_order = (uuid.uuid4().hex for _ in range(3))
    with closing(sqlite3.connect(database)) as connection:
        connection.execute(
            "INSERT INTO merchants (id, slug, name, default_locale, google_origins, created_at,"
            " updated_at) VALUES (?, 'm', 'M', 'en', '[]', '2026-01-01', '2026-01-01')",
            (merchant,),
        )
        for order, status, snapshot in (
            (delivered, "delivered", {"total": {"amount": "49.90", "currency": "EUR"}}),
            (open_order, "confirmed", {}),
        ):
            connection.execute(
                "INSERT INTO orders (id, merchant_id, external_id, status, customer_id, snapshot,"
                " revision, placed_at, last_occurred_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'c-1', ?, 1, '2026-11-01 10:00:00',"
                " '2026-11-03 10:00:00', '2026-11-03 10:00:00')",
                (order, merchant, order[:8], status, json.dumps(snapshot)),
            )
        connection.execute(
            "INSERT INTO order_events (id, merchant_id, event_id, order_id, status, occurred_at,"
            " received_at, outcome, body_hash, response) VALUES (?, ?, 'e-1', ?, 'delivered',"
            " '2026-11-03 10:00:00', '2026-11-03 10:00:00', 'applied', '', '{}')",
            (uuid.uuid4().hex, merchant, delivered),
        )
        connection.commit()
    command.upgrade(config, "head")

    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT external_id, total_minor, currency, delivered_at FROM orders"
            " ORDER BY external_id = ?",
            (delivered[:8],),
        ).fetchall()
    assert rows == [
        (open_order[:8], None, None, None),
        (delivered[:8], 4990, "EUR", "2026-11-03 10:00:00"),
    ]
