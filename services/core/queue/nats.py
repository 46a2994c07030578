"""The ``nats`` queue backend: a relay moves committed outbox rows to NATS JetStream, and one
durable pull consumer per subscription applies them.

Publishing is unchanged (``publish`` writes an outbox row in the caller's transaction), so a
message reaches JetStream only once the change it announces was committed. The relay publishes
each row with the ``Nats-Msg-Id`` header set to the message id and marks the row relayed only
after JetStream acknowledged it: a relay that dies in between publishes the row again, and
JetStream's duplicate window drops the copy. Relays of several processes share the rows through
a lease (``locked_until``), taken in a short transaction and held while publishing, outside any
transaction; a relay's lease left behind by a crash runs out and the rows are relayed again.

What travels on the stream is only the message id (the ``Nats-Msg-Id`` header): a consumer
applies the payload of the outbox row that id names, so nothing another client could publish on
the stream's subjects is ever applied.

Consumers are durable, explicitly acknowledged: a message is applied by ``BatchApplier``, as on
the ``db`` backend (one transaction per batch, recorded in the inbox, so a redelivery has no
second effect), and acknowledged only after that transaction committed. A handler failure is
recorded on the outbox row and negatively acknowledged with the backoff delay; the last attempt
is recorded as failed (``failed_at``) and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import metrics
from services.core.db import read_rows
from services.core.leases import Lease
from services.core.models import utcnow
from services.core.queue import Message, OutboxMessage, Subscription
from services.core.queue.apply import BatchApplier
from services.core.queue.models import MESSAGE_COLUMNS, outbox_table
from services.core.queue.notify import reconnect_delay

log = logging.getLogger(__name__)

BATCH_SIZE = 64
FETCH_SECONDS = 1.0
"""How long a consumer's pull request waits for messages (JetStream answers at once when some
arrive): how soon an idle consumer notices a lost connection, and how long its stop waits for
it (at 5 s, every SIGTERM took 5 s; an idle pull a second costs the server nothing)."""
MESSAGE_ID_HEADER = "Nats-Msg-Id"
PUBLISH_ACK_SECONDS = 10.0
RELAY_LEASE_SECONDS = 1.5 * PUBLISH_ACK_SECONDS
"""How long a relay keeps the rows it publishes from other relays: longer than it waits for
JetStream's acks, so in the normal case no two relays publish a row together, and short, since
it is also how long the rows of a relay killed outright (kill -9) wait for another one (a relay
that fails or is stopped ends its lease at once). A lease that ran out too early only publishes
a row twice, which the stream's duplicate window drops. (Consumers of this backend never look
at ``locked_until``; the ``db`` backend's claims are its other user.)"""
RELAY_RETRY_HORIZON_SECONDS = RELAY_LEASE_SECONDS + PUBLISH_ACK_SECONDS
"""The longest a row published but not yet marked relayed waits before another relay publishes
it again (its lease runs out): the stream's duplicate window must be at least this."""
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
ADVISORY_QUEUE_GROUP = "passpost-max-deliveries"
"""One process of all that consume takes each advisory (any of them may record it)."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What the stream keeps (JetStream drops the oldest beyond them; 0 or less: no limit)."""

    max_age_seconds: float = 7 * 24 * 3600.0
    max_bytes: int = 1 << 30
    max_msgs: int = -1
    duplicate_window_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.duplicate_window_seconds < RELAY_RETRY_HORIZON_SECONDS:
            raise ValueError(
                f"the stream's duplicate window must be at least the relay's retry horizon "
                f"({RELAY_RETRY_HORIZON_SECONDS:.0f} s)"
            )

    def config(self, stream: str) -> StreamConfig:
        return StreamConfig(
            name=stream,
            subjects=[subject(stream, ">")],
            max_age=self.max_age_seconds if self.max_age_seconds > 0 else None,
            max_bytes=self.max_bytes if self.max_bytes > 0 else -1,
            max_msgs=self.max_msgs if self.max_msgs > 0 else -1,
            duplicate_window=self.duplicate_window_seconds,
        )


def redact_url(url: str) -> str:
    """``url`` without its user, password or token, for logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="[redacted]@" + parts.netloc.rsplit("@", 1)[1]))


def subject(stream: str, topic: str) -> str:
    return f"{stream}.{topic}"


def durable_name(subscription: Subscription[Any]) -> str:
    """The JetStream consumer of a subscription (names allow no dots)."""
    return f"{subscription.consumer}-{subscription.topic}".replace(".", "_")


def encode(topic: str) -> bytes:
    """The body of a relayed row: its topic, for whoever reads the stream. Consumers read the
    row itself (``named_message_id``)."""
    return topic.encode()


def named_message_id(msg: Msg) -> uuid.UUID | None:
    """The outbox message a stream message names, if it names one."""
    try:
        return uuid.UUID((msg.headers or {})[MESSAGE_ID_HEADER])
    except (KeyError, ValueError):
        return None


_NAMED_ROWS = select(*MESSAGE_COLUMNS)


def _stop_if_cancelled() -> None:
    """Raise the cancellation nats-py may have swallowed: its waits use ``asyncio.wait_for``,
    which on Python 3.11 drops a cancel that arrives as the wait ends, and a cancelled wait on a
    closed connection becomes ``ConnectionClosedError``. The task still counts the request, so
    a loop that checks here stops instead of retrying forever (and hanging the shutdown)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _hand_back(fetched: Sequence[Msg]) -> None:
    """Ask JetStream to redeliver at once what this consumer fetched and did not finish (a
    message already acknowledged stays acknowledged)."""
    for msg in fetched:
        with contextlib.suppress(Exception):
            await msg.nak()


class NatsQueue:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        url: str,
        stream: str = "passpost",
        poll_interval: float = 0.2,
        lease_seconds: float = 30.0,
        max_attempts: int = 10,
        batch_size: int = BATCH_SIZE,
        limits: StreamLimits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: how to verify the server (and show a client certificate) on ``tls://``."""
        self._sessionmaker = sessionmaker
        self._url = url
        self.stream = stream
        self.limits = limits or StreamLimits()
        self._tls = tls
        self._poll_interval = poll_interval
        self._lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._batch_size = batch_size
        self._applier = BatchApplier(sessionmaker, max_attempts=max_attempts)
        self._relay_lease = Lease(
            sessionmaker,
            outbox_table,
            due=lambda _now: (
                outbox_table.c.relayed_at.is_(None),
                outbox_table.c.processed_at.is_(None),
                outbox_table.c.failed_at.is_(None),
            ),
            order_by=outbox_table.c.id,
            returning=(outbox_table.c.id, outbox_table.c.message_id, outbox_table.c.topic),
            seconds=RELAY_LEASE_SECONDS,
        )
        self._wakeup = asyncio.Event()
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def wake(self) -> None:
        """A message was committed in this process: relay it now rather than at the next poll."""
        self._wakeup.set()

    async def stop(self, grace: float) -> None:
        """Fetch and relay no more: each consumer applies and acknowledges the batch it holds
        (its pull ends within ``FETCH_SECONDS``), the relay finishes its batch, all within
        ``grace`` seconds; cancelled after that, they hand back what they hold."""
        self._stopping = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._stopped.wait()

    async def run(self, subscriptions: list[Subscription[Any]]) -> None:
        """Relay and consume until stopped or cancelled (the relay runs even with no
        subscriptions: this process's commits reach the consumers of other processes)."""
        try:
            pulls = await self._start(subscriptions)
            if subscriptions:
                await self.watch_max_deliveries()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._relay_forever())
                for subscription, pull in pulls:
                    tasks.create_task(self._consume_forever(subscription, pull))
        finally:
            await self.close()
            self._stopped.set()

    async def _start(
        self, subscriptions: list[Subscription[Any]]
    ) -> list[tuple[Subscription[Any], JetStreamContext.PullSubscription]]:
        """Connect and bind the consumers, retrying with backoff until NATS lets us: meanwhile
        the outbox keeps every message and ``/readyz`` says the queue is unreachable."""
        attempt = 0
        while True:
            _stop_if_cancelled()
            try:
                await self.connect()
                return [(s, await self.pull(s)) for s in subscriptions]
            except Exception as exc:  # unreachable, refused, JetStream off: keep trying
                attempt += 1
                log.warning(
                    "queue cannot set up NATS JetStream",
                    extra={"url": redact_url(self._url), "error": type(exc).__name__},
                )
                await self.close()
                await asyncio.sleep(reconnect_delay(attempt))

    async def connect(self) -> None:
        """Connect and make sure the stream exists (nats-py reconnects by itself afterwards)."""
        self._client = await nats.connect(
            self._url,
            name="passpost",
            max_reconnect_attempts=-1,
            tls=self._tls,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._js = self._client.jetstream()
        await self._ensure_stream()
        log.info("queue connected to NATS", extra={"url": redact_url(self._url)})

    async def _ensure_stream(self) -> None:
        """Make the stream, or bring its limits to the settings."""
        js = self._jetstream()
        config = self.limits.config(self.stream)
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:  # it exists with another configuration
            await js.update_stream(config)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        self._js = None

    async def pull(self, subscription: Subscription[Any]) -> JetStreamContext.PullSubscription:
        """The subscription's durable consumer (made or updated to the settings) to fetch from."""
        js = self._jetstream()
        name = durable_name(subscription)
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=name,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._lease_seconds,
                max_deliver=self._max_attempts,
                filter_subject=subject(self.stream, subscription.topic),
            ),
        )
        return await js.pull_subscribe_bind(durable=name, stream=self.stream)

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("the NATS queue is not connected")
        return self._js

    async def relay_once(self) -> int:
        """Publish one batch of committed, unrelayed rows; returns how many were relayed.

        The rows are leased, published outside any transaction, and marked relayed in a short
        transaction once JetStream acknowledged them all: waiting for acks holds no lock (on
        SQLite, not the single writer lock every commit of the process needs)."""
        js = self._jetstream()
        leased = sorted(await self._relay_lease.claim(self._batch_size), key=lambda r: int(r.id))
        if not leased:
            return 0
        ids = [row.id for row in leased]
        try:
            # Sent in order on one connection; the rows are marked only once every ack arrived.
            pending = [
                await js.publish_async(
                    subject(self.stream, row.topic),
                    encode(row.topic),
                    headers={MESSAGE_ID_HEADER: str(row.message_id)},
                )
                for row in leased
            ]
            # An ack that never comes (connection lost) must not keep the rows waiting.
            async with asyncio.timeout(PUBLISH_ACK_SECONDS):
                await asyncio.gather(*pending)
        except BaseException:
            # Failed, or cancelled by a shutdown: the next relay (this process's after a
            # restart, or another's) takes the rows at once instead of after the lease.
            await asyncio.shield(self._release(ids))
            raise
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(outbox_table)
                .where(outbox_table.c.id.in_(ids))
                .values(relayed_at=utcnow(), locked_until=None)
            )
        return len(leased)

    async def _release(self, ids: list[int]) -> None:
        """End the lease of rows whose publishing failed, so the next relay retries them at once
        (if this fails too, the lease runs out)."""
        try:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id.in_(ids), outbox_table.c.relayed_at.is_(None))
                    .values(locked_until=None)
                )
        except Exception as exc:
            log.warning("queue relay could not release its lease", extra={"error": repr(exc)})

    async def consume_once(
        self,
        subscription: Subscription[Any],
        pull: JetStreamContext.PullSubscription,
        *,
        wait_seconds: float = FETCH_SECONDS,
    ) -> int:
        """Fetch one batch (waiting up to ``wait_seconds``), apply it and acknowledge each
        message; returns how many were fetched."""
        try:
            fetched = await pull.fetch(self._batch_size, timeout=wait_seconds)
        except TimeoutError:  # nothing came (nats-py raises its own subclass, or the builtin)
            return 0
        try:
            await self._apply(subscription, await self._outbox_messages(subscription, fetched))
        except BaseException:  # cancelled (a shutdown past its grace): hand them back now
            await asyncio.shield(_hand_back(fetched))
            raise
        return len(fetched)

    async def _outbox_messages(
        self, subscription: Subscription[Any], fetched: Sequence[Msg]
    ) -> list[tuple[Msg, Message]]:
        """Each fetched message with the outbox row it names (one read, no write lock); one
        that names no row of the subscription's topic is not ours, and is dropped."""
        named = [(msg, named_message_id(msg)) for msg in fetched]
        ids = {message_id for _, message_id in named if message_id is not None}
        query = _NAMED_ROWS.where(OutboxMessage.message_id.in_(ids))
        rows = {row.message_id: row for row in await read_rows(self._sessionmaker, query)}
        found: list[tuple[Msg, Message]] = []
        for msg, message_id in named:
            row = rows.get(message_id) if message_id is not None else None
            if row is None or row.topic != subscription.topic:
                log.error(
                    "queue message names no outbox row of its topic; dropped",
                    extra={"consumer": durable_name(subscription), "message_id": str(message_id)},
                )
                await msg.term()
                continue
            found.append(
                (
                    msg,
                    Message(
                        row.message_id,
                        row.topic,
                        row.key,
                        row.payload,
                        row.created_at,
                        msg.metadata.num_delivered,
                    ),
                )
            )
        return found

    async def _apply(
        self, subscription: Subscription[Any], batch: Sequence[tuple[Msg, Message]]
    ) -> None:
        if not batch:
            return
        failures = {
            f.message.id: f
            for f in await self._applier.apply(
                {subscription.topic: subscription}, [message for _, message in batch]
            )
        }
        for msg, message in batch:
            failure = failures.get(message.id)
            if failure is None:
                await msg.ack()  # committed: a lost ack only redelivers a message seen in the inbox
            elif failure.retry_in is None:
                await msg.term()  # recorded as failed, as the db backend does
            else:
                await msg.nak(delay=failure.retry_in)

    async def _relay_forever(self) -> None:
        while not self._stopping:
            _stop_if_cancelled()
            # Cleared before relaying: a commit meanwhile wakes the next wait at once.
            self._wakeup.clear()
            try:
                if await self.relay_once():
                    continue
            except Exception as exc:  # NATS away or the database busy: the rows wait
                log.warning("queue relay failed; retrying", extra={"error": repr(exc)[:500]})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wakeup.wait()

    async def _consume_forever(
        self, subscription: Subscription[Any], pull: JetStreamContext.PullSubscription
    ) -> None:
        while not self._stopping:
            _stop_if_cancelled()
            try:
                if not await self.consume_once(subscription, pull):
                    pull = await self.rebind_if_deleted(subscription, pull)
            except Exception as exc:  # a lost connection: nats-py reconnects, fetch again
                log.warning(
                    "queue consumer failed; retrying",
                    extra={"consumer": durable_name(subscription), "error": repr(exc)[:500]},
                )
                await asyncio.sleep(self._poll_interval)

    async def rebind_if_deleted(
        self, subscription: Subscription[Any], pull: JetStreamContext.PullSubscription
    ) -> JetStreamContext.PullSubscription:
        """The subscription's consumer, made again if it was deleted on the server: a fetch from
        a deleted consumer only ever times out, so an idle consumer checks it exists."""
        js = self._jetstream()
        try:
            await js.consumer_info(self.stream, durable_name(subscription))
            return pull
        except nats.js.errors.NotFoundError:
            log.warning(
                "queue consumer was deleted on the NATS server; making it again",
                extra={"consumer": durable_name(subscription)},
            )
        with contextlib.suppress(Exception):
            await pull.unsubscribe()
        await self._ensure_stream()  # the stream may have gone with it
        return await self.pull(subscription)

    async def watch_max_deliveries(self) -> None:
        """Record as failed what JetStream stops delivering: a message whose every delivery
        ended without an answer (the process died, or the ack was lost) reaches
        ``max_deliver`` with nothing on its outbox row; JetStream announces it in an advisory."""
        client = self._client
        if client is None:
            raise RuntimeError("the NATS queue is not connected")
        await client.subscribe(
            f"{MAX_DELIVERIES_ADVISORY}.{self.stream}.*",
            queue=ADVISORY_QUEUE_GROUP,
            cb=self._on_max_deliveries,
        )

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        try:
            sequence = int(json.loads(advisory.data)["stream_seq"])
            stored = await self._jetstream().get_msg(self.stream, sequence)
            message_id = uuid.UUID((stored.headers or {})[MESSAGE_ID_HEADER])
        except Exception as exc:  # gone from the stream, or not ours: nothing to record
            log.warning("queue max-deliveries advisory not recorded", extra={"error": repr(exc)})
            return
        await self.record_undelivered(message_id)

    async def record_undelivered(self, message_id: uuid.UUID) -> None:
        """Mark the message's row failed, unless a delivery was applied or recorded after all."""
        error = (
            f"NATS JetStream stopped delivering after {self._max_attempts} deliveries "
            "without an answer (max_deliver)"
        )
        async with self._sessionmaker() as session, session.begin():
            done = await session.execute(
                update(outbox_table)
                .where(
                    outbox_table.c.message_id == message_id,
                    outbox_table.c.processed_at.is_(None),
                    outbox_table.c.failed_at.is_(None),
                )
                .values(failed_at=utcnow(), locked_until=None, last_error=error)
                .returning(outbox_table.c.topic)
            )
            topic = done.scalar()
        if topic is not None:
            log.error("message failed", extra={"topic": topic, "gave_up": True, "error": error})
            metrics.QUEUE_MESSAGES.labels(topic=topic, outcome="failed").inc()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS connection error", extra={"error": type(exc).__name__})

    async def _on_disconnected(self) -> None:
        if self._client is None:  # closed on purpose
            return
        log.warning("queue lost its NATS connection; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("queue reconnected to NATS")
