"""The delivery state machine: once per version and device, never older after newer."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.contracts.messages import CardUpdated
from services.core.queue import OutboxMessage
from services.push.apns import ApnsCredentials, ApnsResult
from services.push.deliveries import RECORD_ATTEMPTS, DeliveryWorker, push_id, schedule
from services.push.models import Delivery, PushTarget
from services.push.workers import Wakeup
from tests.statements import statements_of
from tests.waiting import eventually

CARD = uuid.uuid4()
CREDENTIALS = {"auth": "certificate", "certificate_path": "c.pem", "key_path": "k.pem"}


class ScriptedSender:
    """Answers from a script, per token, and remembers every push (for state-machine tests)."""

    def __init__(self, script: dict[str, list[ApnsResult]] | None = None) -> None:
        self.script = {token: deque(results) for token, results in (script or {}).items()}
        self.sent: list[tuple[str, str]] = []
        self.apns_ids: list[str] = []
        self._pushed = asyncio.Condition()

    async def send(
        self, credentials: ApnsCredentials, token: str, topic: str, apns_id: str
    ) -> ApnsResult:
        self.sent.append((token, topic))
        self.apns_ids.append(apns_id)
        async with self._pushed:
            self._pushed.notify_all()
        queue = self.script.get(token)
        return queue.popleft() if queue else ApnsResult(200, apns_id=apns_id)

    async def close(self) -> None:
        return None

    async def wait_for_pushes(self, count: int) -> None:
        async with self._pushed:
            await self._pushed.wait_for(lambda: len(self.sent) >= count)


class GatedSender(ScriptedSender):
    """Holds every push until the test lets it be answered; counts the pushes in flight."""

    def __init__(self) -> None:
        super().__init__()
        self._gate = asyncio.Semaphore(0)
        self.in_flight = self.most_in_flight = 0

    async def send(
        self, credentials: ApnsCredentials, token: str, topic: str, apns_id: str
    ) -> ApnsResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        result = await super().send(credentials, token, topic, apns_id)
        await self._gate.acquire()
        self.in_flight -= 1
        return result

    def answer(self, count: int) -> None:
        for _ in range(count):
            self._gate.release()


def change(version: int, *devices: tuple[str, str]) -> dict[str, Any]:
    return {
        "card_id": str(CARD),
        "merchant_id": str(uuid.uuid4()),
        "serial_number": "s",
        "pass_type_identifier": "pass.test.shop",
        "version": version,
        "apns": CREDENTIALS,
        "devices": [{"device_library_identifier": d, "push_token": t} for d, t in devices],
    }


async def _schedule(sessionmaker: async_sessionmaker[AsyncSession], payload: dict[str, Any]) -> int:
    async with sessionmaker() as session, session.begin():
        return await schedule(session, CardUpdated.model_validate(payload), None)


def _worker(
    sessionmaker: async_sessionmaker[AsyncSession], sender: ScriptedSender, **kwargs: Any
) -> DeliveryWorker:
    return DeliveryWorker(sessionmaker, sender, Wakeup(), **kwargs)


async def _round(worker: DeliveryWorker) -> int:
    """One batch claimed, sent and recorded."""
    claimed = await worker.deliver_once()
    await worker.settle()
    return claimed


async def _deliveries(session: AsyncSession) -> list[tuple[str, int, str]]:
    rows = await session.scalars(select(Delivery).order_by(Delivery.id))
    found = [(d.device_library_identifier, d.version, d.outcome) for d in rows]
    await session.rollback()  # end the read: on SQLite every transaction holds the write lock
    return found


async def test_each_device_gets_the_version_once(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    sender = ScriptedSender()
    worker = _worker(sessionmaker, sender)
    assert await _schedule(sessionmaker, change(2, ("d1", "aa" * 32), ("d2", "bb" * 32))) == 2
    assert await _round(worker) == 2
    assert await _round(worker) == 0
    # The same change delivered again by the queue schedules nothing.
    assert await _schedule(sessionmaker, change(2, ("d1", "aa" * 32), ("d2", "bb" * 32))) == 0
    assert await _round(worker) == 0
    assert sorted(sender.sent) == [("aa" * 32, "pass.test.shop"), ("bb" * 32, "pass.test.shop")]
    deliveries = await _deliveries(session)
    assert sorted(deliveries) == [("d1", 2, "delivered"), ("d2", 2, "delivered")]


async def test_an_older_version_is_never_pushed_after_a_newer(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    sender = ScriptedSender()
    worker = _worker(sessionmaker, sender)
    await _schedule(sessionmaker, change(5, ("d1", "aa" * 32)))
    await _round(worker)
    assert await _schedule(sessionmaker, change(4, ("d1", "aa" * 32))) == 0  # late, older
    assert await _round(worker) == 0
    assert await _deliveries(session) == [("d1", 5, "delivered")]


async def test_changes_pending_together_become_one_push(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    sender = ScriptedSender()
    for version in (2, 3, 4):
        await _schedule(sessionmaker, change(version, ("d1", "aa" * 32)))
    await _round(_worker(sessionmaker, sender))
    assert len(sender.sent) == 1
    assert await _deliveries(session) == [("d1", 4, "delivered")]


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken")])
async def test_dead_token_stops_pushes_and_tells_passes(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, status: int, reason: str
) -> None:
    token = "aa" * 32
    sender = ScriptedSender({token: [ApnsResult(status, reason, timestamp=1700000000000)]})
    worker = _worker(sessionmaker, sender)
    await _schedule(sessionmaker, change(2, ("d1", token)))
    await _round(worker)
    await _schedule(sessionmaker, change(3, ("d1", token)))
    assert await _round(worker) == 0, "a dead token gets nothing more"
    assert await _deliveries(session) == [("d1", 2, "rejected")]
    message = (await session.scalars(select(OutboxMessage))).one()
    topic, payload = message.topic, message.payload
    await session.rollback()
    assert topic == "push_token.rejected"
    assert payload["device_library_identifier"] == "d1"
    assert payload["push_token"] == token

    # The device registers again with a new token: pushes resume.
    await _schedule(sessionmaker, change(4, ("d1", "cc" * 32)))
    assert await _round(worker) == 1
    assert sender.sent[-1][0] == "cc" * 32


@pytest.mark.parametrize(
    "failure",
    [
        ApnsResult(429, "TooManyRequests"),
        ApnsResult(503, "ServiceUnavailable"),
        ApnsResult(0, "Timeout"),
        ApnsResult(0, "ConnectionError: ConnectionClosed"),
    ],
)
async def test_transient_failures_are_retried_with_backoff(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, failure: ApnsResult
) -> None:
    token = "aa" * 32
    sender = ScriptedSender({token: [failure]})
    worker = _worker(sessionmaker, sender)
    await _schedule(sessionmaker, change(2, ("d1", token)))
    await _round(worker)
    assert await _round(worker) == 0, "a retry waits for its backoff"
    target = (await session.scalars(select(PushTarget))).one()
    assert target.sent_version == 0
    target.available_at = target.available_at.replace(year=2000)
    await session.commit()
    assert await _round(worker) == 1
    assert await _deliveries(session) == [("d1", 2, "retry"), ("d1", 2, "delivered")]


async def test_every_attempt_of_a_push_has_one_apns_id_and_each_version_its_own(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    token = "aa" * 32
    sender = ScriptedSender({token: [ApnsResult(500, "InternalServerError")]})
    worker = _worker(sessionmaker, sender)
    await _schedule(sessionmaker, change(2, ("d1", token)))
    await _round(worker)
    target = (await session.scalars(select(PushTarget))).one()
    target.available_at = target.available_at.replace(year=2000)
    await session.commit()
    await _round(worker)
    await _schedule(sessionmaker, change(3, ("d1", token)))
    await _round(worker)
    retried, delivered, newer = sender.apns_ids
    assert retried == delivered == push_id(CARD, "d1", 2)
    assert newer == push_id(CARD, "d1", 3) != delivered
    recorded = await session.scalars(select(Delivery.apns_id).order_by(Delivery.id))
    assert list(recorded)[1:] == [delivered, newer]


async def test_gives_up_after_max_attempts(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    token = "aa" * 32
    sender = ScriptedSender({token: [ApnsResult(500, "InternalServerError")] * 2})
    worker = _worker(sessionmaker, sender, max_attempts=2)
    await _schedule(sessionmaker, change(2, ("d1", token)))
    for _ in range(2):
        await _round(worker)
        target = (await session.scalars(select(PushTarget))).one()
        target.available_at = target.available_at.replace(year=2000)
        await session.commit()
    assert await _round(worker) == 0
    assert await _deliveries(session) == [("d1", 2, "retry"), ("d1", 2, "failed")]
    # A newer version is pushed again.
    await _schedule(sessionmaker, change(3, ("d1", token)))
    assert await _round(worker) == 1


async def test_a_push_in_flight_is_not_claimed_twice(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
    first_sender, second_sender = GatedSender(), ScriptedSender()
    first, second = _worker(sessionmaker, first_sender), _worker(sessionmaker, second_sender)
    assert await first.deliver_once() == 1
    await first_sender.wait_for_pushes(1)
    assert await second.deliver_once() == 0, "leased by the first worker"
    assert second_sender.sent == []
    first_sender.answer(1)
    await first.settle()
    assert await _deliveries(session) == [("d1", 2, "delivered")]


async def test_a_push_answered_slower_than_its_lease_keeps_it(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Caught by tests/faults/test_kill.py on a busy SQLite: a push answered, then recorded
    after its lease ran out, was claimed and sent again by the next worker meanwhile."""
    clock = [datetime.now(UTC) + timedelta(seconds=5)]  # after the target became due
    monkeypatch.setattr("services.core.leases.utcnow", lambda: clock[0])
    await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
    first_sender, second_sender = GatedSender(), ScriptedSender()
    first = _worker(sessionmaker, first_sender, lease_seconds=0.3)
    second = _worker(sessionmaker, second_sender)
    running = asyncio.create_task(first.run())
    await first_sender.wait_for_pushes(1)
    clock[0] += timedelta(seconds=1)  # the first lease ran out while APNs was answering

    async def renewed() -> bool:
        locked_until = await session.scalar(select(PushTarget.locked_until))
        await session.rollback()
        return locked_until is not None and locked_until > clock[0]

    await eventually(renewed, seconds=10)
    assert await second.deliver_once() == 0, "still leased by the first worker"
    first_sender.answer(1)
    await first.stop(grace=5)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert second_sender.sent == []
    assert await _deliveries(session) == [("d1", 2, "delivered")]


async def test_deliveries_keep_only_the_token_suffix(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    token = "0123456789abcdef" * 4
    await _schedule(sessionmaker, change(2, ("d1", token)))
    await _round(_worker(sessionmaker, ScriptedSender()))
    delivery = (await session.scalars(select(Delivery))).one()
    assert delivery.push_token_suffix == token[-8:]
    assert delivery.apns_id
    await session.rollback()


async def test_one_batch_records_every_outcome(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    """Delivered pushes are recorded in bulk, the others one by one, in the same batch."""
    ok, dead, busy = "aa" * 32, "bb" * 32, "cc" * 32
    sender = ScriptedSender(
        {dead: [ApnsResult(410, "Unregistered")], busy: [ApnsResult(429, "TooManyRequests")]}
    )
    await _schedule(sessionmaker, change(3, ("d1", ok), ("d2", dead), ("d3", busy)))
    assert await _round(_worker(sessionmaker, sender)) == 3
    assert sorted(await _deliveries(session)) == [
        ("d1", 3, "delivered"),
        ("d2", 3, "rejected"),
        ("d3", 3, "retry"),
    ]
    targets = {
        t.device_library_identifier: (t.sent_version, t.status, t.attempts, t.locked_until)
        for t in await session.scalars(select(PushTarget))
    }
    await session.rollback()
    assert targets == {
        "d1": (3, "active", 0, None),
        "d2": (0, "dead", 1, None),
        "d3": (0, "active", 1, None),
    }


async def test_a_delivery_never_lowers_the_sent_version(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    """A slow worker whose lease expired may record after a newer push went out."""
    await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
    sender = GatedSender()
    worker = _worker(sessionmaker, sender)
    assert await worker.deliver_once() == 1
    await sender.wait_for_pushes(1)
    target = (await session.scalars(select(PushTarget))).one()
    target.sent_version = target.wanted_version = 5
    await session.commit()
    sender.answer(1)
    await worker.settle()
    await session.refresh(target)
    assert (target.sent_version, target.locked_until) == (5, None)
    await session.rollback()


async def test_more_is_claimed_as_pushes_are_answered(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    """At most a batch in flight; half of it answered makes room for more, each sent once."""
    sender = GatedSender()
    worker = _worker(sessionmaker, sender, batch_size=4)
    devices = [(f"d{i}", f"{i:064x}") for i in range(10)]
    await _schedule(sessionmaker, change(2, *devices))
    assert await worker.deliver_once() == 4
    await sender.wait_for_pushes(4)
    more = asyncio.create_task(worker.deliver_once())
    sender.answer(2)
    assert await more == 2, "room for the two answered while the others are in flight"
    sender.answer(10)
    while await worker.deliver_once():
        pass
    assert sender.most_in_flight == 4
    assert sorted(token for token, _ in sender.sent) == sorted(token for _, token in devices)
    assert sorted(await _deliveries(session)) == [(d, 2, "delivered") for d, _ in devices]


async def test_a_change_during_a_push_is_pushed_after_it(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    """The target stays leased until its outcome is committed, then the newer version goes."""
    sender = GatedSender()
    worker = _worker(sessionmaker, sender)
    await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
    assert await worker.deliver_once() == 1
    await sender.wait_for_pushes(1)
    await _schedule(sessionmaker, change(3, ("d1", "aa" * 32)))
    assert await _worker(sessionmaker, ScriptedSender()).deliver_once() == 0, "leased in flight"
    sender.answer(2)
    assert await _round(worker) == 0
    assert await _round(worker) == 1
    assert await _deliveries(session) == [("d1", 2, "delivered"), ("d1", 3, "delivered")]


async def test_shutdown_records_every_push_in_flight(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    sender = GatedSender()
    worker = _worker(sessionmaker, sender, batch_size=4, poll_interval=60)
    devices = [(f"d{i}", f"{i:064x}") for i in range(10)]
    await _schedule(sessionmaker, change(2, *devices))
    running = asyncio.create_task(worker.run())
    await sender.wait_for_pushes(4)
    stopping = asyncio.create_task(worker.stop(grace=30))
    sender.answer(2)  # room for two more, claimed before the worker sees it is stopping
    await sender.wait_for_pushes(6)
    sender.answer(4)
    await stopping
    left = [t for t in asyncio.all_tasks() if not t.done() and t is not running]
    assert left == [asyncio.current_task()], "nothing is still being sent or recorded"
    await running
    sent = {token for token, _ in sender.sent}
    assert sorted(await _deliveries(session)) == sorted(
        (d, 2, "delivered") for d, token in devices if token in sent
    )
    assert len(sent) == 6


async def test_a_record_that_fails_once_is_tried_again_and_the_push_goes_once(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    """Caught by tests/scale/test_sigterm.py: a record chosen as a deadlock's victim stopped the
    worker for good, its pushes leased and every later push of the process waiting."""
    failures = [1]

    def fail_once(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if failures[0] and statement.startswith("INSERT INTO push_deliveries"):
            failures[0] -= 1
            raise RuntimeError("deadlock detected")

    event.listen(engine.sync_engine, "before_cursor_execute", fail_once)
    try:
        await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
        sender = ScriptedSender()
        assert await _round(_worker(sessionmaker, sender)) == 1
        assert sender.sent == [("aa" * 32, "pass.test.shop")]
        assert await _deliveries(session) == [("d1", 2, "delivered")]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", fail_once)


async def test_a_record_that_keeps_failing_leaves_the_push_to_its_lease_and_the_worker_goes_on(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    """The outcome was never committed: once the lease runs out the target is due again, and
    the same worker, still running, sends it."""
    failing = [True]
    tried = [0]

    def fail_the_record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if failing[0] and statement.startswith("INSERT INTO push_deliveries"):
            tried[0] += 1
            raise RuntimeError("disk full")

    event.listen(engine.sync_engine, "before_cursor_execute", fail_the_record)
    sender = ScriptedSender()
    worker = _worker(sessionmaker, sender, poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))

        async def given_up() -> bool:
            return tried[0] >= RECORD_ATTEMPTS

        await eventually(given_up)
        failing[0] = False
        assert not running.done(), "the worker goes on"
        target = (await session.scalars(select(PushTarget))).one()
        assert target.sent_version == 0
        assert target.locked_until is not None, "still leased"
        target.locked_until = target.locked_until.replace(year=2000)  # the lease ran out
        await session.commit()

        async def delivered() -> bool:
            return await _deliveries(session) == [("d1", 2, "delivered")]

        await eventually(delivered)
        assert sender.sent == [("aa" * 32, "pass.test.shop")] * 2
    finally:
        await worker.stop(grace=5)
        await running
        event.remove(engine.sync_engine, "before_cursor_execute", fail_the_record)


async def test_a_woken_worker_claims_once_per_change_and_then_sleeps(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, engine: AsyncEngine
) -> None:
    """A commit wakes the worker: it claims without peeking, pushes, records and sleeps; a
    second claim at once would find nothing at the price of a transaction."""
    wakeup, sender = Wakeup(), ScriptedSender()
    worker = DeliveryWorker(sessionmaker, sender, wakeup, poll_interval=30)
    with statements_of(engine) as statements:
        await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
        running = asyncio.create_task(worker.run())
        await eventually(lambda: _delivered(session, 1))
        await _schedule(sessionmaker, change(3, ("d1", "aa" * 32)))
        wakeup.set()  # what the schedule's commit does in a served process
        await eventually(lambda: _delivered(session, 2))
        await worker.stop(grace=5)
        await running
    claims = [s for s in statements if s.startswith("UPDATE push_targets SET attempts")]
    looks = [s for s in statements if s.startswith("SELECT push_targets.card_id")]
    assert sender.sent == [("aa" * 32, "pass.test.shop")] * 2
    assert (len(looks), len(claims)) == (1, 2), "a look at the start, then a claim per wake-up"


async def _delivered(session: AsyncSession, count: int) -> bool:
    return len(await _deliveries(session)) >= count
