"""Per-transaction state and commit hooks: they follow the whole transaction, never a
SAVEPOINT inside it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from services.core.transaction import Slot, after_commit, before_commit

SEEN = Slot[list[str]]("what the test saw", list)
UNDONE = Slot[list[str]]("undone with a savepoint", list, forget_at_savepoint_rollback=True)


async def test_commit_runs_each_callback_once_and_forgets_the_state(
    session: AsyncSession,
) -> None:
    ran: list[str] = []

    def before(sync_session: Session) -> None:
        assert sync_session is session.sync_session
        ran.append("before")

    def after() -> None:
        ran.append("after")

    await session.execute(text("SELECT 1"))
    for _ in range(2):
        before_commit(session, before)
        after_commit(session, after)
    SEEN.get(session).append("x")
    await session.commit()
    assert ran == ["before", "after"]
    assert SEEN.peek(session) is None
    await session.execute(text("SELECT 1"))
    await session.commit()
    assert ran == ["before", "after"], "a later transaction runs nothing registered before"


async def test_rollback_drops_the_callbacks_and_the_state(session: AsyncSession) -> None:
    ran: list[str] = []
    await session.execute(text("SELECT 1"))
    before_commit(session, lambda _session: ran.append("before"))
    after_commit(session, lambda: ran.append("after"))
    SEEN.get(session).append("x")
    await session.begin_nested()
    await session.rollback()  # the whole transaction, savepoint and all
    assert SEEN.peek(session) is None
    await session.execute(text("SELECT 1"))
    await session.commit()
    assert ran == []


async def test_savepoints_released_or_rolled_back_keep_callbacks_and_state(
    session: AsyncSession,
) -> None:
    ran: list[str] = []
    await session.execute(text("SELECT 1"))
    async with session.begin_nested():
        before_commit(session, lambda _session: ran.append("before"))
        after_commit(session, lambda: ran.append("after"))
        SEEN.get(session).append("released")
    assert ran == []
    savepoint = await session.begin_nested()
    SEEN.get(session).append("rolled back")
    UNDONE.get(session).append("rolled back")
    await savepoint.rollback()
    assert ran == []
    assert SEEN.get(session) == ["released", "rolled back"]
    assert UNDONE.peek(session) is None, "a slot of what a savepoint undoes goes with it"
    async with session.begin_nested():
        UNDONE.get(session).append("released")
    await session.commit()
    assert ran == ["before", "after"]


async def test_slots_are_per_transaction(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await session.execute(text("SELECT 1"))
    SEEN.get(session).append("first")
    assert SEEN.get(session) == ["first"]
    async with sessionmaker() as other:
        assert SEEN.get(other) == [], "another session's transaction has its own"
    await session.commit()
    await session.execute(text("SELECT 1"))
    assert SEEN.get(session) == [], "a new transaction starts empty"
    SEEN.set(session, ["second"])
    assert SEEN.peek(session) == ["second"]
    await session.rollback()
    assert SEEN.peek(session) is None


async def test_a_callback_registered_during_the_commit_flush_still_runs(
    session: AsyncSession,
) -> None:
    """What a ``before_flush`` listener registers at the commit's own flush (merchants)."""
    ran: list[str] = []

    def later(_session: Session) -> None:
        after_commit(session, lambda: ran.append("after"))

    await session.execute(text("SELECT 1"))
    before_commit(session, later)
    await session.commit()
    assert ran == ["after"]
