"""The durable queue between services: publish inside a transaction, consume at least once.

Publishing writes an outbox row in the caller's transaction, so a message exists exactly when
the change it announces was committed. Consumers apply each message in a transaction that also
records it in the inbox, so a redelivered message has no second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import after_commit
from services.core.queue.models import InboxMessage, OutboxMessage
from services.core.queue.notify import notify_at_commit

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


@dataclass(frozen=True, slots=True)
class Message:
    id: uuid.UUID
    topic: str
    key: str | None
    payload: dict[str, Any]
    created_at: datetime
    attempt: int


Handler = Callable[[AsyncSession, Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription:
    """``consumer`` applies ``topic`` with ``handler``; the consumer name keys its inbox."""

    consumer: str
    topic: str
    handler: Handler


class QueueBackend(Protocol):
    async def run(self, subscriptions: list[Subscription]) -> None:
        """Consume until cancelled."""

    def wake(self) -> None:
        """A message was just committed (in this process, or in another one that told this one):
        look now rather than at the next poll."""


def publish(
    session: AsyncSession, topic: str, payload: dict[str, Any], *, key: str | None = None
) -> uuid.UUID:
    """Add a message to the caller's transaction: delivered only if that transaction commits."""
    message = OutboxMessage(message_id=uuid.uuid4(), topic=topic, key=key, payload=payload)
    session.add(message)
    _wake_consumers_at_commit(session, topic)
    return message.message_id


async def publish_all(
    session: AsyncSession, topic: str, messages: Sequence[tuple[dict[str, Any], str | None]]
) -> None:
    """``publish`` for many (payload, key) pairs at once, with one bulk INSERT."""
    if not messages:
        return
    await session.execute(
        insert(OutboxMessage),
        [
            {"message_id": uuid.uuid4(), "topic": topic, "key": key, "payload": payload}
            for payload, key in messages
        ],
    )
    _wake_consumers_at_commit(session, topic)


def _wake_consumers_at_commit(session: AsyncSession, topic: str) -> None:
    """Consumers in this process (in-process listeners) and in others (NOTIFY) look at once."""
    after_commit(session, _notify_listeners)
    notify_at_commit(session, topic)


_BATCH = "passpost.queue_batch"


def batch_of(session: AsyncSession) -> Sequence[Message]:
    """The messages a consumer applies in this session's transaction (its claimed batch), so a
    handler may look up what all of them need at once; empty outside a consumer."""
    batch: Sequence[Message] = session.info.get(_BATCH, ())
    return batch


def applying(session: AsyncSession, messages: Sequence[Message]) -> None:
    """Tell handlers (``batch_of``) which messages this transaction applies."""
    session.info[_BATCH] = messages


_listeners: list[Callable[[], None]] = []


def on_commit_of_published(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after any commit in this process that published; returns the function
    that removes it. (Other processes' commits: ``notify.CommitListener``, PostgreSQL only.)"""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _notify_listeners() -> None:
    for listener in list(_listeners):
        listener()
