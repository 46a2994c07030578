"""The durable queue between services: publish inside a transaction, consume at least once.

Publishing writes an outbox row in the caller's transaction, so a message exists exactly when
the change it announces was committed. Consumers apply each message in a transaction that also
records it in the inbox, so a redelivered message has no second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import after_commit
from services.core.queue.models import InboxMessage, OutboxMessage

__all__ = [
    "Handler",
    "InboxMessage",
    "Message",
    "OutboxMessage",
    "QueueBackend",
    "Subscription",
    "publish",
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
        """A message was just committed in this process: look now rather than at the next poll."""


def publish(
    session: AsyncSession, topic: str, payload: dict[str, Any], *, key: str | None = None
) -> uuid.UUID:
    """Add a message to the caller's transaction: delivered only if that transaction commits."""
    message = OutboxMessage(message_id=uuid.uuid4(), topic=topic, key=key, payload=payload)
    session.add(message)
    after_commit(session, _notify_listeners)
    return message.message_id


_listeners: list[Callable[[], None]] = []


def on_commit_of_published(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after any commit that published; returns the function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _notify_listeners() -> None:
    for listener in list(_listeners):
        listener()
