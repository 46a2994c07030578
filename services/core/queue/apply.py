"""Applying delivered messages, the same way whichever backend delivered them.

A batch is applied in one transaction that records each message in the inbox and marks its
outbox row processed; a failure is recorded on the outbox row (``last_error``, and ``failed_at``
once the attempts are used up), so ops see a failed message alike on every backend. A message
whose payload is not its topic's contract is recorded as failed at once: it would never apply.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.logging import message_id as message_id_var
from services.core.models import utcnow
from services.core.queue import InboxMessage, Message, OutboxMessage, Subscription, applying
from services.core.queue.contract import Contract

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter: 1 s, 2 s, 4 s ... capped at five minutes."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempt - 1))  # noqa: S311


@dataclass(frozen=True, slots=True)
class Failure:
    """A message whose handler failed: to retry in ``retry_in`` seconds, or given up (None)."""

    message: Message
    retry_in: float | None


class UnreadableMessage(ValueError):
    """A payload that is not its topic's contract (a bug, or a publisher of another version)."""

    def __init__(self, error: ValidationError) -> None:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}"
            for e in error.errors()[:5]
        )
        super().__init__(f"not a {error.title} message: {problems}")


Subscriptions = dict[str, Subscription[Any]]
"""A consumer's subscriptions by topic."""


class _HandlerFailed(Exception):
    def __init__(self, message: Message, error: Exception) -> None:
        super().__init__(str(error))
        self.message = message
        self.error = error


class BatchApplier:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, max_attempts: int
    ) -> None:
        self._sessionmaker = sessionmaker
        self._max_attempts = max_attempts

    async def apply(self, by_topic: Subscriptions, messages: Sequence[Message]) -> list[Failure]:
        """Apply a delivered batch in one transaction: one inbox lookup, one bulk inbox insert
        and one outbox update for all of it; returns the messages that failed.

        A handler that fails rolls the whole batch back: its message is recorded as failed (to
        retry later) and every other message is applied again in a transaction of its own, so
        one bad message costs its batch a second pass, never an effect or a lost message. (No
        SAVEPOINT per message: releasing one runs the session's after-commit callbacks early.)
        """
        readable, failures = await self._read(by_topic, messages)
        if readable:
            failures += await self._apply_readable(by_topic, readable)
        return failures

    async def _read(
        self, by_topic: Subscriptions, messages: Sequence[Message]
    ) -> tuple[list[tuple[Message, Contract]], list[Failure]]:
        """Each message with its payload read as its contract; the unreadable recorded failed."""
        readable: list[tuple[Message, Contract]] = []
        failures: list[Failure] = []
        for message in messages:
            try:
                readable.append((message, by_topic[message.topic].read(message)))
            except ValidationError as exc:
                failures.append(
                    await self._record_failure(message, UnreadableMessage(exc), give_up=True)
                )
        return readable, failures

    async def _apply_readable(
        self, by_topic: Subscriptions, messages: Sequence[tuple[Message, Contract]]
    ) -> list[Failure]:
        try:
            done = await self._apply_together(by_topic, messages)
        except _HandlerFailed as failed:
            failures = [await self._record_failure(failed.message, failed.error)]
            rest = [m for m in messages if m[0] is not failed.message]
        except Exception as exc:  # the batch could not commit: try each message alone
            if len(messages) == 1:
                return [await self._record_failure(messages[0][0], exc)]
            failures, rest = [], list(messages)
        else:
            for message, duplicate in done:
                outcome = "duplicate" if duplicate else "processed"
                metrics.QUEUE_MESSAGES.labels(topic=message.topic, outcome=outcome).inc()
                metrics.QUEUE_LAG.labels(topic=message.topic).observe(
                    (utcnow() - message.created_at).total_seconds()
                )
            return []
        for alone in rest:
            failures += await self._apply_readable(by_topic, [alone])
        return failures

    async def _apply_together(
        self, by_topic: Subscriptions, messages: Sequence[tuple[Message, Contract]]
    ) -> list[tuple[Message, bool]]:
        """Apply ``messages`` in one transaction; (message, was a duplicate) for each."""
        done: list[tuple[Message, bool]] = []
        async with self._sessionmaker() as session, session.begin():
            consumers = {by_topic[m.topic].consumer for m, _ in messages}
            applied = {
                (row.consumer, row.message_id)
                for row in await session.execute(
                    select(InboxMessage.consumer, InboxMessage.message_id).where(
                        InboxMessage.consumer.in_(consumers),
                        InboxMessage.message_id.in_([m.id for m, _ in messages]),
                    )
                )
            }
            applying(
                session,
                [c for m, c in messages if (by_topic[m.topic].consumer, m.id) not in applied],
            )
            for message, contract in messages:
                subscription = by_topic[message.topic]
                if (subscription.consumer, message.id) in applied:
                    done.append((message, True))
                    continue
                token = message_id_var.set(str(message.id))
                try:
                    await subscription.handler(session, contract)
                except DBAPIError:
                    # Maybe an earlier message's write, flushed by this one's query (handlers
                    # leave their writes to the batch's flush): tried message by message.
                    raise
                except Exception as exc:  # a handler's failure must not stop the consumer
                    raise _HandlerFailed(message, exc) from exc
                finally:
                    message_id_var.reset(token)
                applied.add((subscription.consumer, message.id))
                done.append((message, False))
            await self._record_done(session, by_topic, done)
        return done

    @staticmethod
    async def _record_done(
        session: AsyncSession, by_topic: Subscriptions, done: list[tuple[Message, bool]]
    ) -> None:
        if not done:
            return
        new = [
            {"consumer": by_topic[m.topic].consumer, "message_id": m.id}
            for m, duplicate in done
            if not duplicate
        ]
        if new:
            await session.execute(insert(InboxMessage), new)
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.message_id.in_([m.id for m, _ in done]))
            .values(processed_at=utcnow(), locked_until=None, last_error=None)
        )

    async def _record_failure(
        self, message: Message, exc: Exception, *, give_up: bool = False
    ) -> Failure:
        give_up = give_up or message.attempt >= self._max_attempts
        log.warning(
            "message failed",
            extra={
                "topic": message.topic,
                "attempt": message.attempt,
                "gave_up": give_up,
                "error": f"{type(exc).__name__}: {exc}"[:500],
            },
            exc_info=exc,
        )
        now = utcnow()
        delay = retry_delay(message.attempt)
        values = {
            "attempts": message.attempt,
            "locked_until": None,
            "last_error": f"{type(exc).__name__}: {exc}"[:2000],
            "available_at": now + timedelta(seconds=delay),
        }
        if give_up:
            values["failed_at"] = now
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.message_id == message.id).values(**values)
            )
        metrics.QUEUE_MESSAGES.labels(
            topic=message.topic, outcome="failed" if give_up else "retried"
        ).inc()
        return Failure(message, None if give_up else delay)
