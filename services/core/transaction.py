"""State that lives exactly as long as a session's transaction, and work run at its commit.

Some state must not outlive its transaction: what a consumer's batch applies, a pass type's
update tag taken (and locked) until commit, the topics to NOTIFY. Some work must wait for a
durable commit: waking a queue's consumers, emptying a cache of credentials. Both hang off
the session; this module is the one place that watches the session's transactions for them.

- ``Slot[T]``: a named, typed place in the transaction's state, made by its factory on first
  use (``slot.get(session)``) and forgotten when the whole transaction ends.
- ``before_commit(session, callback)``: ``callback(sync_session)`` runs as the outermost
  transaction commits, before its last flush, on its connection (still able to write).
- ``after_commit(session, callback)``: ``callback()`` runs once the outermost transaction has
  committed; dropped if it rolls back.

"The whole transaction" is the outermost one. SQLAlchemy reports a SAVEPOINT's release as a
commit and its rollback as a rollback; neither ends the transaction, so neither runs the
callbacks nor drops them or the slots (what a rolled-back savepoint promised stays promised:
at worst a callback runs once for nothing). A slot whose value records work a savepoint's
rollback undoes in the database (a counter bumped inside it) says so with
``forget_at_savepoint_rollback`` and is emptied by any rolled-back savepoint.

``session`` is an ``AsyncSession`` or its sync ``Session``: both share ``info``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

T = TypeVar("T")

AnySession = AsyncSession | Session

_STATE = "passpost.transaction"


@dataclass(eq=False)
class _TransactionState:
    slots: dict[Slot[Any], Any] = field(default_factory=dict)
    before_commit: list[Callable[[Session], None]] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def _state(session: AnySession) -> _TransactionState:
    state: _TransactionState = session.info.setdefault(_STATE, _TransactionState())
    return state


class Slot(Generic[T]):
    """A named place for one value per transaction, made by ``factory`` when first asked for."""

    def __init__(
        self, name: str, factory: Callable[[], T], *, forget_at_savepoint_rollback: bool = False
    ) -> None:
        self.name = name
        self._factory = factory
        self.forget_at_savepoint_rollback = forget_at_savepoint_rollback

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"

    def get(self, session: AnySession) -> T:
        """This transaction's value, made now if it has none yet."""
        slots = _state(session).slots
        if self not in slots:
            slots[self] = self._factory()
        value: T = slots[self]
        return value

    def peek(self, session: AnySession) -> T | None:
        """This transaction's value if it has one (nothing is made)."""
        state: _TransactionState | None = session.info.get(_STATE)
        if state is None:
            return None
        value: T | None = state.slots.get(self)
        return value

    def set(self, session: AnySession, value: T) -> None:
        _state(session).slots[self] = value


def before_commit(session: AnySession, callback: Callable[[Session], None]) -> None:
    """Run ``callback(sync_session)`` as the outermost transaction commits (once, however
    often it is registered); a failure fails the commit."""
    callbacks = _state(session).before_commit
    if callback not in callbacks:
        callbacks.append(callback)


def after_commit(session: AnySession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the outermost transaction has committed (never on rollback)."""
    callbacks = _state(session).after_commit
    if callback not in callbacks:
        callbacks.append(callback)


@event.listens_for(Session, "before_commit")
def _run_before_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a SAVEPOINT's release
        return
    state: _TransactionState | None = session.info.get(_STATE)
    while state is not None and state.before_commit:
        state.before_commit.pop(0)(session)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a SAVEPOINT's release: nothing is durable yet
        return
    state: _TransactionState | None = session.info.pop(_STATE, None)
    for callback in state.after_commit if state is not None else ():
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _forget_undone(session: Session, previous: SessionTransaction) -> None:
    state: _TransactionState | None = session.info.get(_STATE)
    if state is None or not previous.nested:
        return
    for slot in [s for s in state.slots if s.forget_at_savepoint_rollback]:
        del state.slots[slot]


@event.listens_for(Session, "after_transaction_end")
def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed, rolled back or closed): forget it all.
    if transaction.parent is None:
        session.info.pop(_STATE, None)
