"""The ``nats`` queue backend: the relay and the JetStream consumers, against a real NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.queue import (
    InboxMessage,
    OutboxMessage,
    Subscription,
    on_commit_of_published,
    publish,
)
from services.core.queue.nats import NatsQueue, redact_url
from services.merchants.models import Merchant
from tests.conftest import NATS_URL, nats_stream
from tests.core.test_queue import Named, Other, Recorder, _count, fails_on_bad

pytestmark = pytest.mark.skipif(not NATS_URL, reason="PASSPOST_TEST_NATS_URL is not set")

MakeQueue = Callable[..., Awaitable[NatsQueue]]


@pytest.fixture
async def make_queue(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[MakeQueue]:
    """Connected queues on one stream of the test's own (several: several processes)."""
    made: list[NatsQueue] = []
    async with nats_stream() as stream:

        async def make(**kwargs: float) -> NatsQueue:
            options = {"poll_interval": 0.01, **kwargs}
            queue = NatsQueue(sessionmaker, url=NATS_URL, stream=stream, **options)  # type: ignore[arg-type]
            await queue.connect()
            made.append(queue)
            return queue

        yield make
        for queue in made:
            await queue.close()


async def _consume(
    queue: NatsQueue, subscription: Subscription[Any], wait_seconds: float = 0.5
) -> int:
    """Fetch and apply what the subscription's consumer has (waiting up to ``wait_seconds``)."""
    pull = await queue.pull(subscription)
    return await queue.consume_once(subscription, pull, wait_seconds=wait_seconds)


async def _outbox_row(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: object
) -> OutboxMessage:
    async with sessionmaker() as session:
        row = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id)
        )
        assert row is not None
        return row


async def test_only_committed_rows_are_relayed_and_applied_in_order(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    async with sessionmaker() as session:
        publish(session, Named(name="lost"))
        await session.flush()
        await session.rollback()
    async with sessionmaker() as session:
        ids = [publish(session, Named(name=n), key="k") for n in ("a", "b", "c")]
        await session.commit()

    queue = await make_queue()
    assert await queue.relay_once() == 3
    assert await queue.relay_once() == 0
    recorder = Recorder()
    assert await _consume(queue, Subscription("tester", Named, recorder)) == 3
    assert [(m.id, m.name) for m in recorder.seen] == [(ids[0], "a"), (ids[1], "b"), (ids[2], "c")]
    async with sessionmaker() as session:
        assert await _count(session, Merchant) == 3
        assert set(await session.scalars(select(InboxMessage.message_id))) == set(ids)
        rows = (await session.scalars(select(OutboxMessage))).all()
        assert all(r.relayed_at is not None and r.processed_at is not None for r in rows)


async def test_a_row_relayed_twice_is_delivered_once(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="twice"))
        await session.commit()
    queue = await make_queue()
    assert await queue.relay_once() == 1
    # As if the relay died after JetStream's ack but before marking the row.
    async with sessionmaker() as session:
        await session.execute(update(OutboxMessage).values(relayed_at=None))
        await session.commit()
    assert await queue.relay_once() == 1

    recorder = Recorder()
    subscription = Subscription("tester", Named, recorder)
    assert await _consume(queue, subscription) == 1
    assert await _consume(queue, subscription) == 0
    assert [m.id for m in recorder.seen] == [message_id]


async def test_relays_of_several_processes_publish_each_row_once(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    async with sessionmaker() as session:
        for n in range(20):
            publish(session, Named(name=str(n)))
        await session.commit()
    first, second = await make_queue(batch_size=5), await make_queue(batch_size=5)

    async def relay_all(queue: NatsQueue) -> int:
        total = 0
        while relayed := await queue.relay_once():
            total += relayed
        return total

    assert sum(await asyncio.gather(relay_all(first), relay_all(second))) == 20
    recorder = Recorder()
    consumer = await make_queue()
    assert await _consume(consumer, Subscription("tester", Named, recorder)) == 20
    assert len({m.id for m in recorder.seen}) == 20


async def test_redelivery_after_a_crash_before_ack_has_no_second_effect(
    sessionmaker: async_sessionmaker[AsyncSession],
    make_queue: MakeQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with sessionmaker() as session:
        publish(session, Named(name="once"))
        await session.commit()
    queue = await make_queue(lease_seconds=1)
    await queue.relay_once()
    recorder = Recorder()
    subscription = Subscription("tester", Named, recorder)

    async def crash_before_ack(_msg: Msg) -> None:
        """The transaction committed; the process died before acknowledging."""

    with monkeypatch.context() as patched:
        patched.setattr(Msg, "ack", crash_before_ack)
        assert await _consume(queue, subscription) == 1

    # JetStream redelivers once the lease (ack_wait) has run out.
    assert await _consume(queue, subscription, wait_seconds=5) == 1
    assert await _consume(queue, subscription) == 0
    async with sessionmaker() as session:
        assert await _count(session, Merchant) == 1
        assert await _count(session, InboxMessage) == 1
    assert len(recorder.seen) == 1, "the handler must not even run for a seen message"


async def test_a_failing_handler_is_retried_then_recorded_as_failed(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="poison"))
        await session.commit()
    queue = await make_queue(max_attempts=2)
    await queue.relay_once()
    recorder = Recorder(fail_times=5)
    subscription = Subscription("tester", Named, recorder)

    assert await _consume(queue, subscription) == 1
    row = await _outbox_row(sessionmaker, message_id)
    assert "handler failed on purpose" in (row.last_error or "")
    assert row.failed_at is None
    assert (row.processed_at, row.attempts) == (None, 1)

    # Redelivered after its backoff (under a second for a first failure), then given up.
    assert await _consume(queue, subscription, wait_seconds=3) == 1
    row = await _outbox_row(sessionmaker, message_id)
    assert row.failed_at is not None
    assert (row.processed_at, row.attempts) == (None, 2)
    assert await _consume(queue, subscription, wait_seconds=1.5) == 0
    assert [m.id for m in recorder.seen] == [message_id, message_id]
    async with sessionmaker() as session:
        assert await _count(session, Merchant) == 0
        assert await _count(session, InboxMessage) == 0


async def test_a_failing_message_in_a_batch_is_rolled_back_alone(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    async with sessionmaker() as session:
        ids = [publish(session, Named(name=n)) for n in ("one", "bad", "two")]
        await session.commit()
    queue = await make_queue()
    await queue.relay_once()
    assert await _consume(queue, Subscription("t", Named, fails_on_bad)) == 3

    async with sessionmaker() as session:
        assert set(await session.scalars(select(Merchant.slug))) == {"one", "two"}
        assert set(await session.scalars(select(InboxMessage.message_id))) == {ids[0], ids[2]}
    assert (await _outbox_row(sessionmaker, ids[1])).processed_at is None


async def test_other_topics_are_left_alone(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    async with sessionmaker() as session:
        publish(session, Other(name="not mine"))
        await session.commit()
    queue = await make_queue()
    assert await queue.relay_once() == 1
    recorder = Recorder()
    assert await _consume(queue, Subscription("t", Named, recorder)) == 0
    assert recorder.seen == []


async def test_a_running_queue_relays_at_commit_and_applies(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    queue = await make_queue(poll_interval=30)  # only the wake-up can relay in time
    await queue.close()
    recorder = Recorder()
    running = asyncio.create_task(queue.run([Subscription("t", Named, recorder)]))
    stop_waking = on_commit_of_published(queue.wake)  # as create_app does
    try:
        await asyncio.sleep(0.5)  # connected, past its first look for rows
        async with sessionmaker() as session:
            publish(session, Named(name="now"))
            await session.commit()
        async with asyncio.timeout(10):
            while not recorder.seen:  # noqa: ASYNC110  (waiting for the background consumer)
                await asyncio.sleep(0.05)
    finally:
        stop_waking()
        running.cancel()
        await asyncio.wait({running}, timeout=5)
    assert running.cancelled()


async def test_an_idle_queue_stops_well_within_its_grace(make_queue: MakeQueue) -> None:
    """Each consumer waits in a pull for at most ``nats.FETCH_SECONDS``: stopped, it ends by
    itself within a short grace (at 5 s, every SIGTERM and test teardown waited 5 s)."""
    queue = await make_queue()
    running = asyncio.create_task(queue.run([Subscription("t", Named, Recorder())]))
    async with asyncio.timeout(10):
        while not queue.connected:  # noqa: ASYNC110  (waiting for the background set-up)
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the consumer is inside its fetch
    await queue.stop(grace=3.0)  # the pull's wait and then some: not the 10 s SIGTERM allows
    assert running.done()
    assert not running.cancelled()


async def test_a_queue_cancelled_as_its_connection_closes_stops(make_queue: MakeQueue) -> None:
    """nats-py turns a cancelled wait on a closed connection into ``ConnectionClosedError``:
    the consumer must still stop, or the app's shutdown waits for it forever."""
    queue = await make_queue()
    await queue.close()
    running = asyncio.create_task(queue.run([Subscription("t", Named, Recorder())]))
    async with asyncio.timeout(10):
        while not queue.connected:  # noqa: ASYNC110  (waiting for the background set-up)
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the consumer is inside its fetch
    client = queue._client
    assert client is not None
    running.cancel()
    await client.close()  # before the consumer sees its cancellation
    done, _ = await asyncio.wait({running}, timeout=10)
    assert running in done
    assert running.cancelled()


def test_credentials_are_redacted_from_the_url() -> None:
    assert (
        redact_url("nats://alice:s3cret@nats.example:4222") == "nats://[redacted]@nats.example:4222"
    )
    assert redact_url("nats://t0ken@nats.example:4222") == "nats://[redacted]@nats.example:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


async def test_only_the_outbox_row_a_stream_message_names_is_applied(
    sessionmaker: async_sessionmaker[AsyncSession], make_queue: MakeQueue
) -> None:
    """Anyone who can publish on the stream's subjects cannot make a consumer apply a body of
    their own: the consumer applies the payload of the outbox row the message id names, and
    drops a message that names none (or a row of another topic)."""
    async with sessionmaker() as session:
        real = publish(session, Named(name="real"))
        other = publish(session, Other(name="other"))
        await session.commit()
    queue = await make_queue()  # no relay: every message on the stream is the test's
    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        subject = f"{queue.stream}.{Named.topic}"
        forged = b'{"payload": {"schema_version": 1, "name": "forged"}}'
        for message_id in (str(real), str(uuid.uuid4()), str(other), "not-an-id"):
            await js.publish(subject, forged, headers={"Nats-Msg-Id": message_id})
    finally:
        await client.close()

    recorder = Recorder()
    assert await _consume(queue, Subscription("tester", Named, recorder)) == 4
    assert [(m.id, m.name) for m in recorder.seen] == [(real, "real")]
    async with sessionmaker() as session:
        assert set(await session.scalars(select(Merchant.name))) == {"real"}
