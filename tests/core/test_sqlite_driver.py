"""SQLite: the one-trip cursor answers as aiosqlite's cursor does (rows, counts, errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.core.sqlite_driver import DRIVER

METADATA = MetaData()
ITEMS = Table(
    "items",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
)


@pytest.fixture(params=["aiosqlite", DRIVER])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """SQLAlchemy's aiosqlite dialect and ours, on the same statements."""
    engine = create_async_engine(f"sqlite+{request.param}:///{tmp_path}/items.db")
    async with engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    yield engine
    await engine.dispose()


async def test_rows_counts_and_ids_are_the_drivers(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(insert(ITEMS).values(name="a"))
        assert inserted.inserted_primary_key == (1,)
        many = await connection.execute(insert(ITEMS), [{"name": "b"}, {"name": "c"}])
        assert many.rowcount == 2
        returned = await connection.execute(
            insert(ITEMS).values(name="d").returning(ITEMS.c.id, ITEMS.c.name)
        )
        assert returned.all() == [(4, "d")]
        changed = await connection.execute(
            update(ITEMS).where(ITEMS.c.id > 2).values(name=ITEMS.c.name + "!")
        )
        assert changed.rowcount == 2
        rows = await connection.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))
        assert rows.scalars().all() == ["a", "b", "c!", "d!"]
        first = await connection.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))
        assert first.fetchmany(3) == [("a",), ("b",), ("c!",)]
        assert first.fetchone() == ("d!",)
        assert first.fetchone() is None
        nothing = await connection.execute(select(ITEMS).where(ITEMS.c.id == 99))
        assert nothing.first() is None
        assert (await connection.execute(text("PRAGMA user_version"))).scalar() == 0


async def test_a_failed_statement_is_the_drivers_error_and_the_connection_goes_on(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(insert(ITEMS).values(name="a"))
        with pytest.raises(IntegrityError):
            await connection.execute(insert(ITEMS).values(name="a"))
        await connection.rollback()
        assert (await connection.execute(select(ITEMS))).all() == []
