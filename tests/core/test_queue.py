"""The outbox and the db queue: delivered only after commit, applied exactly once."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core.logging import message_id as applied_message_id
from services.core.models import utcnow
from services.core.queue import (
    InboxMessage,
    OutboxMessage,
    Subscription,
    on_commit_of_published,
    publish,
    publish_all,
)
from services.core.queue.apply import retry_delay
from services.core.queue.contract import Contract
from services.core.queue.db import DatabaseQueue
from services.merchants.models import Merchant
from tests.statements import statements_of
from tests.waiting import eventually, queue_drained


class Named(Contract):
    """The test's own message."""

    topic: ClassVar[str] = "test.topic"
    name: str


class Other(Contract):
    topic: ClassVar[str] = "other.topic"
    name: str


@dataclass(frozen=True)
class Seen:
    """A message as its handler saw it: the id it was applied under, and what it said."""

    id: uuid.UUID
    name: str


class Recorder:
    """A handler with a visible effect: it writes a merchant row per message it applies."""

    def __init__(self, fail_times: int = 0) -> None:
        self.seen: list[Seen] = []
        self.fail_times = fail_times

    async def __call__(self, session: AsyncSession, message: Named) -> None:
        self.seen.append(Seen(uuid.UUID(applied_message_id.get()), message.name))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("handler failed on purpose")
        session.add(Merchant(slug=f"m-{uuid.uuid4().hex[:8]}", name=message.name))


def _queue(sessionmaker: async_sessionmaker[AsyncSession], **kwargs: float) -> DatabaseQueue:
    return DatabaseQueue(sessionmaker, poll_interval=0.01, **kwargs)  # type: ignore[arg-type]


async def _count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_message_of_a_rolled_back_transaction_is_never_delivered(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        publish(session, Named(name="lost"))
        await session.flush()
        await session.rollback()
    async with sessionmaker() as session:
        publish(session, Named(name="kept"))
        await session.commit()

    recorder = Recorder()
    queue = _queue(sessionmaker)
    subscriptions = [Subscription("tester", Named, recorder)]
    assert await queue.drain_once(subscriptions) == 1
    assert await queue.drain_once(subscriptions) == 0
    assert [m.name for m in recorder.seen] == ["kept"]


async def test_messages_published_together_arrive_in_order_after_commit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await publish_all(session, [(Named(name="lost"), None)])
        await session.rollback()
    async with sessionmaker() as session:
        await publish_all(session, [(Named(name=n), "k") for n in ("a", "b", "c")])
        await session.commit()

    recorder = Recorder()
    assert await _queue(sessionmaker).drain_once([Subscription("t", Named, recorder)]) == 3
    assert [m.name for m in recorder.seen] == ["a", "b", "c"]
    async with sessionmaker() as session:
        keys = await session.execute(
            select(OutboxMessage.message_id, OutboxMessage.key).order_by(OutboxMessage.id)
        )
        assert [(m.id, "k") for m in recorder.seen] == list(map(tuple, keys))


async def test_redelivered_message_has_no_second_effect(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="once"))
        await session.commit()
    recorder = Recorder()
    queue = _queue(sessionmaker)
    subscriptions = [Subscription("tester", Named, recorder)]
    await queue.drain_once(subscriptions)

    # Deliver it again, as a broker would after a lost acknowledgement.
    async with sessionmaker() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.message_id == message_id)
            .values(processed_at=None, locked_until=None)
        )
        await session.commit()
    assert await queue.drain_once(subscriptions) == 1

    async with sessionmaker() as session:
        assert await _count(session, Merchant) == 1
        assert await _count(session, InboxMessage) == 1
    assert len(recorder.seen) == 1, "the handler must not even run for a seen message"


async def test_failed_message_is_retried_later_and_its_effect_rolled_back(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="flaky"))
        await session.commit()
    recorder = Recorder(fail_times=1)
    queue = _queue(sessionmaker)
    subscriptions = [Subscription("tester", Named, recorder)]
    await queue.drain_once(subscriptions)

    async with sessionmaker() as session:
        row = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id)
        )
        assert row is not None
        assert row.processed_at is None
        assert row.failed_at is None
        assert row.available_at > utcnow(), "a retry waits for its backoff"
        assert "handler failed on purpose" in (row.last_error or "")
        assert await _count(session, Merchant) == 0
        assert await _count(session, InboxMessage) == 0
        row.available_at = utcnow() - timedelta(seconds=1)
        await session.commit()

    assert await queue.drain_once(subscriptions) == 1
    async with sessionmaker() as session:
        assert await _count(session, Merchant) == 1
        assert (
            await session.scalar(
                select(OutboxMessage.attempts).where(OutboxMessage.message_id == message_id)
            )
            == 2
        )
    assert [m.id for m in recorder.seen] == [message_id, message_id]


async def fails_on_bad(session: AsyncSession, message: Named) -> None:
    """Adds a merchant named after the message, then fails if that name is "bad"."""
    session.add(Merchant(slug=message.name, name=message.name))
    await session.flush()
    if message.name == "bad":
        raise RuntimeError("handler failed on purpose")


async def test_a_failing_message_in_a_batch_is_rolled_back_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        ids = [publish(session, Named(name=n)) for n in ("one", "bad", "two")]
        await session.commit()
    assert await _queue(sessionmaker).drain_once([Subscription("t", Named, fails_on_bad)]) == 3

    async with sessionmaker() as session:
        slugs = set(await session.scalars(select(Merchant.slug)))
        assert slugs == {"one", "two"}
        assert set(await session.scalars(select(InboxMessage.message_id))) == {ids[0], ids[2]}
        rows = {
            row.message_id: row
            for row in await session.scalars(
                select(OutboxMessage).where(OutboxMessage.message_id.in_(ids))
            )
        }
        assert rows[ids[0]].processed_at is not None
        assert rows[ids[2]].processed_at is not None
        assert rows[ids[1]].processed_at is None
        assert "handler failed on purpose" in (rows[ids[1]].last_error or "")


async def test_a_write_that_fails_at_a_later_flush_fails_only_its_own_message(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Handlers leave their writes to the batch's flush, so one message's bad write can fail
    in the next one's query (autoflush): that error is not the next message's to bear."""
    async with sessionmaker() as session:
        session.add(Merchant(slug="taken", name="taken"))
        ids = [publish(session, Named(name=n)) for n in ("one", "taken", "two")]
        await session.commit()

    async def handler(session: AsyncSession, message: Named) -> None:
        await session.scalar(select(func.count()).select_from(Merchant))  # flushes the last
        session.add(Merchant(slug=message.name, name=message.name))

    assert await _queue(sessionmaker).drain_once([Subscription("t", Named, handler)]) == 3
    async with sessionmaker() as session:
        assert set(await session.scalars(select(InboxMessage.message_id))) == {ids[0], ids[2]}
        failed = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == ids[1])
        )
        assert failed is not None
        assert failed.processed_at is None
        assert "merchants" in (failed.last_error or "")


async def test_message_gives_up_after_max_attempts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="poison"))
        await session.commit()
    queue = _queue(sessionmaker, max_attempts=1)
    await queue.drain_once([Subscription("tester", Named, Recorder(fail_times=5))])
    async with sessionmaker() as session:
        row = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id)
        )
        assert row is not None
        assert row.failed_at is not None
    assert await queue.drain_once([Subscription("tester", Named, Recorder())]) == 0


async def test_claimed_message_is_not_claimed_twice_until_its_lease_ends(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A consumer that stops without a word (its process killed after its claim) leaves the
    message leased: no other consumer takes it until the lease runs out, then
    one does."""
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="leased"))
        await session.commit()
    # Claimed, and the process was killed before applying it.
    assert len(await _queue(sessionmaker)._claim([Named.topic])) == 1
    recorder = Recorder()
    other = _queue(sessionmaker)
    assert await other.drain_once([Subscription("t", Named, recorder)]) == 0
    async with sessionmaker() as session:
        await session.execute(
            update(OutboxMessage).values(locked_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert await other.drain_once([Subscription("t", Named, recorder)]) == 1
    assert [m.id for m in recorder.seen] == [message_id]
    async with sessionmaker() as session:
        row = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id)
        )
        assert row is not None
        assert (row.attempts, row.processed_at is not None) == (2, True)


async def test_a_consumer_stopped_mid_message_hands_it_back_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A shutdown past its grace cancels the consumer mid-batch: the next one takes the
    message at once, not when the lease runs out."""
    async with sessionmaker() as session:
        message_id = publish(session, Named(name="handed back"))
        await session.commit()

    async def cancelled(_session: AsyncSession, _message: Named) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _queue(sessionmaker).drain_once([Subscription("t", Named, cancelled)])
    recorder = Recorder()
    assert await _queue(sessionmaker).drain_once([Subscription("t", Named, recorder)]) == 1
    assert [m.id for m in recorder.seen] == [message_id]


async def test_a_stopped_queue_finishes_its_batch_and_takes_no_more(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        publish(session, Named(name="in flight"))
        await session.commit()
    handling, release = asyncio.Event(), asyncio.Event()
    recorder = Recorder()

    async def slow(session: AsyncSession, message: Named) -> None:
        handling.set()
        await release.wait()
        await recorder(session, message)

    queue = _queue(sessionmaker)
    running = asyncio.create_task(queue.run([Subscription("t", Named, slow)]))
    await handling.wait()
    stopping = asyncio.create_task(queue.stop(grace=30))
    release.set()
    await stopping
    assert running.done(), "stopped once its batch was applied"
    assert [m.name for m in recorder.seen] == ["in flight"]
    async with sessionmaker() as session:
        assert await _count(session, InboxMessage) == 1


async def test_other_topics_are_left_alone(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        publish(session, Other(name="not mine"))
        await session.commit()
    recorder = Recorder()
    assert await _queue(sessionmaker).drain_once([Subscription("t", Named, recorder)]) == 0
    assert recorder.seen == []


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_retry_delay_grows_and_is_capped(attempt: int) -> None:
    delay = retry_delay(attempt)
    assert 0.5 * min(300, 2 ** (attempt - 1)) <= delay <= min(300, 2 ** (attempt - 1))


async def test_a_woken_queue_claims_once_per_batch_and_then_sleeps(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    """A commit wakes the queue: it claims without a look first, applies the short batch and
    sleeps; claiming again at once would find nothing at the price of a transaction."""
    recorder = Recorder()
    queue = DatabaseQueue(sessionmaker, poll_interval=30)
    with statements_of(engine) as statements:
        async with sessionmaker() as session:
            publish(session, Named(name="first"))
            await session.commit()
        running = asyncio.create_task(queue.run([Subscription("t", Named, recorder)]))
        await eventually(lambda: queue_drained(sessionmaker))
        async with sessionmaker() as session:
            publish(session, Named(name="second"))
            await session.commit()
        queue.wake()  # what the commit's listener does in a served process
        await eventually(lambda: queue_drained(sessionmaker))
        await queue.stop(grace=5)
        await running
    claims = [s for s in statements if s.startswith("UPDATE outbox_messages SET attempts")]
    looks = [s for s in statements if s.startswith("SELECT outbox_messages.id")]
    assert [m.name for m in recorder.seen] == ["first", "second"]
    assert (len(looks), len(claims)) == (1, 2), "a look at the start, then a claim per wake-up"


async def test_a_queue_woken_as_it_is_cancelled_still_stops(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Shutdown cancels the queue; a commit may wake it in the same loop turn."""
    queue = DatabaseQueue(sessionmaker, poll_interval=30)
    running = asyncio.create_task(queue.run([Subscription("test", Named, Recorder())]))
    await asyncio.sleep(0.3)  # past its first look for messages, asleep until woken
    queue.wake()
    running.cancel()
    await asyncio.wait({running}, timeout=5)
    assert running.cancelled()


async def test_a_payload_that_is_not_its_contract_is_recorded_failed_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A message that cannot be read never applies, so it is given up on its first attempt
    (with the reason) instead of being retried until the attempts run out."""
    async with sessionmaker() as session:
        good = publish(session, Named(name="good"))
        bad = OutboxMessage(topic=Named.topic, payload={"schema_version": 1, "nom": "x"})
        session.add(bad)
        await session.commit()
    recorder = Recorder()
    queue = _queue(sessionmaker, max_attempts=10)
    assert await queue.drain_once([Subscription("t", Named, recorder)]) == 2

    assert [m.id for m in recorder.seen] == [good]
    async with sessionmaker() as session:
        row = await session.get_one(OutboxMessage, bad.id)
        assert row.failed_at is not None
        assert row.processed_at is None
        assert row.attempts == 1
        assert "name: Field required" in (row.last_error or "")
        assert "x" not in (row.last_error or "").split("name")[0], "no payload value in the log"
    assert await queue.drain_once([Subscription("t", Named, recorder)]) == 0


def test_publish_stores_the_contract_and_its_version() -> None:
    session = _RecordingSession()
    publish(session, Named(name="a"), key="k")  # type: ignore[arg-type]
    (row,) = session.added
    assert (row.topic, row.key, row.payload) == (
        "test.topic",
        "k",
        {"schema_version": 1, "name": "a"},
    )


class _RecordingSession:
    """Just enough of a session for ``publish``: what was added, and the transaction's info."""

    def __init__(self) -> None:
        self.added: list[Any] = []
        self.info: dict[str, Any] = {}

    def add(self, row: Any) -> None:
        self.added.append(row)


async def test_a_commit_wakes_the_listeners_of_the_topics_it_published(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A consumer of this process looks for work after a commit that published its topic,
    not after every commit (another process consumes the rest); the NATS relay hears all."""
    woken: list[str] = []
    stops = [
        on_commit_of_published(lambda: woken.append("test"), {Named.topic}),
        on_commit_of_published(lambda: woken.append("other"), [Other.topic]),
        on_commit_of_published(lambda: woken.append("any")),
    ]
    try:
        async with sessionmaker() as session:
            publish(session, Named(name="a"))
            await publish_all(session, [(Named(name="b"), None)])
            await session.commit()
        assert sorted(woken) == ["any", "test"], "one wake-up each, at the commit"
        async with sessionmaker() as session:
            publish(session, Other(name="c"))
            await session.rollback()
        assert sorted(woken) == ["any", "test"], "a rollback wakes nobody"
        woken.clear()
        async with sessionmaker() as session:
            await publish_all(session, [(Named(name="d"), None), (Other(name="e"), None)])
            await session.commit()
        assert sorted(woken) == ["any", "other", "test"]
    finally:
        for stop in stops:
            stop()
