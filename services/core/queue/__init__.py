"""The durable queue between services: publish inside a transaction, consume at least once.

Publishing writes an outbox row in the caller's transaction, so a message exists exactly when
the change it announces was committed. Consumers apply each message in a transaction that also
records it in the inbox, so a redelivered message has no second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.queue.contract import Contract
from services.core.queue.models import InboxMessage, OutboxMessage
from services.core.queue.notify import ORIGIN, channel, notify_at_commit
from services.core.transaction import AnySession, Slot, after_commit

__all__ = [
    "Handler",
    "InboxMessage",
    "Message",
    "OutboxMessage",
    "QueueBackend",
    "Subscription",
    "batch_of",
    "publish",
    "publish_all",
]

C = TypeVar("C", bound=Contract)


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the queue carries it: its payload is the stored JSON of a ``Contract``."""

    id: uuid.UUID
    topic: str
    key: str | None
    payload: dict[str, Any]
    created_at: datetime
    attempt: int


Handler = Callable[[AsyncSession, C], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription(Generic[C]):
    """``consumer`` applies every ``contract`` message with ``handler``; the consumer name keys
    its inbox. The handler receives the message validated into its contract."""

    consumer: str
    contract: type[C]
    handler: Handler[C]

    @property
    def topic(self) -> str:
        return self.contract.topic

    def read(self, message: Message) -> C:
        """The message's payload as its contract; ``pydantic.ValidationError`` if it is not."""
        return self.contract.model_validate(message.payload)


class QueueBackend(Protocol):
    async def run(self, subscriptions: list[Subscription[Any]]) -> None:
        """Consume until cancelled."""

    async def stop(self, grace: float) -> None:
        """Take no more work, finish (or hand back) what is held, within ``grace`` seconds."""

    def wake(self) -> None:
        """A message was just committed (in this process, or in another one that told this one):
        look now rather than at the next poll."""


def _stored(message: Contract) -> dict[str, Any]:
    """A contract as its outbox row keeps it (``None`` fields left out: they read back alike)."""
    return message.model_dump(mode="json", exclude_none=True)


def publish(session: AnySession, message: Contract, *, key: str | None = None) -> uuid.UUID:
    """Add a message to the caller's transaction: delivered only if that transaction commits.

    ``session`` may be the sync one of a ``before_commit`` hook (counts a transaction
    gathered are published as it commits)."""
    row = OutboxMessage(
        message_id=uuid.uuid4(), topic=message.topic, key=key, payload=_stored(message)
    )
    session.add(row)
    _wake_consumers_at_commit(session, {message.topic})
    return row.message_id


async def publish_all(
    session: AsyncSession, messages: Sequence[tuple[Contract, str | None]]
) -> None:
    """``publish`` for many (message, key) pairs at once, with one bulk INSERT."""
    if not messages:
        return
    await session.execute(
        insert(OutboxMessage),
        [
            {
                "message_id": uuid.uuid4(),
                "topic": message.topic,
                "key": key,
                "payload": _stored(message),
            }
            for message, key in messages
        ],
    )
    _wake_consumers_at_commit(session, {message.topic for message, _ in messages})


def _wake_consumers_at_commit(session: AnySession, topics: set[str]) -> None:
    """Consumers in this process (in-process listeners) and in others (NOTIFY) look at once."""
    published = _PUBLISHED.get(session)
    if not published:  # the first publish of the transaction: one wake-up at its commit
        after_commit(session, lambda: _notify_listeners(published))
    published |= topics
    for topic in sorted(topics):
        notify_at_commit(session, channel(topic), ORIGIN)


_PUBLISHED = Slot[set[str]]("topics the transaction published", set)


_BATCH = Slot[Sequence[Contract]]("messages the consumer applies", tuple)


def batch_of(session: AsyncSession, contract: type[C]) -> Sequence[C]:
    """The ``contract`` messages a consumer applies in this session's transaction (its claimed
    batch), so a handler may look up what all of them need at once; empty outside a consumer."""
    batch = _BATCH.peek(session) or ()
    return [message for message in batch if isinstance(message, contract)]


def applying(session: AsyncSession, messages: Sequence[Contract]) -> None:
    """Tell handlers (``batch_of``) which messages this transaction applies."""
    _BATCH.set(session, messages)


_listeners: list[tuple[Callable[[], None], frozenset[str] | None]] = []


def on_commit_of_published(
    listener: Callable[[], None], topics: Collection[str] | None = None
) -> Callable[[], None]:
    """Call ``listener`` after any commit in this process that published one of ``topics``
    (any topic: None); returns the function that removes it. (Other processes' commits:
    ``notify.CommitListener``, PostgreSQL only.)

    A consumer names its topics: woken by every commit, the orders service's own queue looked
    for work after each group of order events it published for another service (5% of the
    process's CPU under single events, by profile)."""
    entry = (listener, None if topics is None else frozenset(topics))
    _listeners.append(entry)
    return lambda: _listeners.remove(entry)


def _notify_listeners(published: set[str]) -> None:
    for listener, topics in list(_listeners):
        if topics is None or not topics.isdisjoint(published):
            listener()
