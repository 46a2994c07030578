"""After-commit callbacks: they follow the whole transaction, never a SAVEPOINT inside it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import after_commit


async def test_callback_waits_for_the_outer_commit_past_savepoints(session: AsyncSession) -> None:
    ran: list[str] = []
    await session.execute(text("SELECT 1"))
    after_commit(session, lambda: ran.append("commit"))
    async with session.begin_nested():
        await session.execute(text("SELECT 1"))
    assert ran == []
    savepoint = await session.begin_nested()
    await session.execute(text("SELECT 1"))
    await savepoint.rollback()
    assert ran == []
    await session.commit()
    assert ran == ["commit"]


async def test_callback_is_dropped_when_the_outer_transaction_rolls_back(
    session: AsyncSession,
) -> None:
    ran: list[str] = []
    await session.execute(text("SELECT 1"))
    after_commit(session, lambda: ran.append("commit"))
    await session.begin_nested()
    await session.rollback()
    await session.execute(text("SELECT 1"))
    await session.commit()
    assert ran == []
