"""The delivery state machine: once per version and device, never older after newer."""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.queue import OutboxMessage
from services.push.apns import ApnsCredentials, ApnsResult
from services.push.deliveries import DeliveryWorker, schedule
from services.push.models import Delivery, PushTarget
from services.push.workers import Wakeup

CARD = uuid.uuid4()
CREDENTIALS = {"auth": "certificate", "certificate_path": "c.pem", "key_path": "k.pem"}


class ScriptedSender:
    """Answers from a script, per token, and remembers every push (for state-machine tests)."""

    def __init__(self, script: dict[str, list[ApnsResult]] | None = None) -> None:
        self.script = {token: deque(results) for token, results in (script or {}).items()}
        self.sent: list[tuple[str, str]] = []

    async def send(self, credentials: ApnsCredentials, token: str, topic: str) -> ApnsResult:
        self.sent.append((token, topic))
        queue = self.script.get(token)
        return queue.popleft() if queue else ApnsResult(200, apns_id=str(uuid.uuid4()))

    async def close(self) -> None:
        return None


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
        return await schedule(session, payload, None)


def _worker(
    sessionmaker: async_sessionmaker[AsyncSession], sender: ScriptedSender, **kwargs: Any
) -> DeliveryWorker:
    return DeliveryWorker(sessionmaker, sender, Wakeup(), **kwargs)


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
    assert await worker.deliver_once() == 2
    assert await worker.deliver_once() == 0
    # The same change delivered again by the queue schedules nothing.
    assert await _schedule(sessionmaker, change(2, ("d1", "aa" * 32), ("d2", "bb" * 32))) == 0
    assert await worker.deliver_once() == 0
    assert sorted(sender.sent) == [("aa" * 32, "pass.test.shop"), ("bb" * 32, "pass.test.shop")]
    deliveries = await _deliveries(session)
    assert sorted(deliveries) == [("d1", 2, "delivered"), ("d2", 2, "delivered")]


async def test_an_older_version_is_never_pushed_after_a_newer(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    sender = ScriptedSender()
    worker = _worker(sessionmaker, sender)
    await _schedule(sessionmaker, change(5, ("d1", "aa" * 32)))
    await worker.deliver_once()
    assert await _schedule(sessionmaker, change(4, ("d1", "aa" * 32))) == 0  # late, older
    assert await worker.deliver_once() == 0
    assert await _deliveries(session) == [("d1", 5, "delivered")]


async def test_changes_pending_together_become_one_push(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    sender = ScriptedSender()
    for version in (2, 3, 4):
        await _schedule(sessionmaker, change(version, ("d1", "aa" * 32)))
    await _worker(sessionmaker, sender).deliver_once()
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
    await worker.deliver_once()
    await _schedule(sessionmaker, change(3, ("d1", token)))
    assert await worker.deliver_once() == 0, "a dead token gets nothing more"
    assert await _deliveries(session) == [("d1", 2, "rejected")]
    message = (await session.scalars(select(OutboxMessage))).one()
    topic, payload = message.topic, message.payload
    await session.rollback()
    assert topic == "push_token.rejected"
    assert payload["device_library_identifier"] == "d1"
    assert payload["push_token"] == token

    # The device registers again with a new token: pushes resume.
    await _schedule(sessionmaker, change(4, ("d1", "cc" * 32)))
    assert await worker.deliver_once() == 1
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
    await worker.deliver_once()
    assert await worker.deliver_once() == 0, "a retry waits for its backoff"
    target = (await session.scalars(select(PushTarget))).one()
    assert target.sent_version == 0
    target.available_at = target.available_at.replace(year=2000)
    await session.commit()
    assert await worker.deliver_once() == 1
    assert await _deliveries(session) == [("d1", 2, "retry"), ("d1", 2, "delivered")]


async def test_gives_up_after_max_attempts(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    token = "aa" * 32
    sender = ScriptedSender({token: [ApnsResult(500, "InternalServerError")] * 2})
    worker = _worker(sessionmaker, sender, max_attempts=2)
    await _schedule(sessionmaker, change(2, ("d1", token)))
    for _ in range(2):
        await worker.deliver_once()
        target = (await session.scalars(select(PushTarget))).one()
        target.available_at = target.available_at.replace(year=2000)
        await session.commit()
    assert await worker.deliver_once() == 0
    assert await _deliveries(session) == [("d1", 2, "retry"), ("d1", 2, "failed")]
    # A newer version is pushed again.
    await _schedule(sessionmaker, change(3, ("d1", token)))
    assert await worker.deliver_once() == 1


async def test_a_push_in_flight_is_not_claimed_twice(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _schedule(sessionmaker, change(2, ("d1", "aa" * 32)))
    first, second = _worker(sessionmaker, ScriptedSender()), _worker(sessionmaker, ScriptedSender())
    claimed = await first._claim()
    assert len(claimed) == 1
    assert await second._claim() == []


async def test_deliveries_keep_only_the_token_suffix(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    token = "0123456789abcdef" * 4
    await _schedule(sessionmaker, change(2, ("d1", token)))
    await _worker(sessionmaker, ScriptedSender()).deliver_once()
    delivery = (await session.scalars(select(Delivery))).one()
    assert delivery.push_token_suffix == token[-8:]
    assert delivery.apns_id
    await session.rollback()
