"""Alembic environment: async engines, one tree for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.core.db import ensure_wal
from services.core.settings import get_settings
from services.models import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK = 0x70617373  # 'pass'


def _url() -> str:
    url = config.attributes.get("database_url") or get_settings().resolved_database_url
    return str(url)


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # Here, once and before anything serves, rather than raced by a pool's first connections.
        cursor = connection.connection.cursor()
        ensure_wal(cursor)
        cursor.close()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several containers may start at once: one migrates, the others wait and find head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
