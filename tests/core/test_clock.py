"""The clock tests move instead of sleeping, and the scheduled jobs it wakes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.clock import Clock, clock
from services.core.schedule import Job, Schedule
from tests.waiting import eventually

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def set_clock() -> Iterator[Clock]:
    clock.set(NOON)
    yield clock
    clock.reset()


def test_a_set_clock_stands_until_moved() -> None:
    own = Clock()
    before = datetime.now(UTC)
    assert own.now() >= before
    own.set(NOON)
    assert own.now() == NOON
    own.advance(timedelta(hours=9))
    assert own.now() == NOON + timedelta(hours=9)
    own.reset()
    assert own.now() >= before


def test_the_clock_keeps_aware_times_in_utc() -> None:
    own = Clock()
    with pytest.raises(ValueError, match="aware"):
        own.set(datetime(2026, 12, 1, 12, 0))
    own.set(datetime.fromisoformat("2026-12-01T13:00:00+01:00"))
    assert own.now() == NOON
    assert own.now().tzinfo == UTC
    with pytest.raises(RuntimeError):
        Clock().advance(timedelta(seconds=1))


def test_watchers_hear_every_move_until_they_stop() -> None:
    own, heard = Clock(), []
    stop = own.watch(lambda: heard.append(own.now()))
    own.set(NOON)
    own.advance(timedelta(minutes=1))
    stop()
    own.advance(timedelta(minutes=1))
    assert heard == [NOON, NOON + timedelta(minutes=1)]


async def test_a_job_runs_batches_back_to_back_then_when_the_clock_passes_a_deadline(
    set_clock: Clock,
) -> None:
    due = [NOON, NOON, NOON + timedelta(hours=8)]
    handled: list[datetime] = []

    async def expire(_: async_sessionmaker[AsyncSession], now: datetime) -> int:
        """One row a batch: the due ones at ``now``."""
        ready = [when for when in due if when <= now]
        if not ready:
            return 0
        due.remove(ready[0])
        handled.append(now)
        return 1

    # An hour between rounds: only the clock's move can make it run again within the test.
    job = Job("expire", every=3600, run=expire)
    [runner] = Schedule([job], cast(async_sessionmaker[AsyncSession], None)).start()
    try:

        async def handled_count(count: int) -> bool:
            return len(handled) == count

        await eventually(lambda: handled_count(2))
        set_clock.advance(timedelta(hours=8))
        await eventually(lambda: handled_count(3))
        assert handled == [NOON, NOON, NOON + timedelta(hours=8)]
        assert due == []
    finally:
        runner.cancel()


async def test_a_failing_round_is_logged_and_the_job_goes_on(
    set_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    rounds: list[int] = []

    async def flaky(_: async_sessionmaker[AsyncSession], now: datetime) -> int:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("database away")
        return 0

    job = Job("flaky", every=3600, run=flaky)
    [runner] = Schedule([job], cast(async_sessionmaker[AsyncSession], None)).start()
    try:

        async def ran(count: int) -> bool:
            return len(rounds) >= count

        await eventually(lambda: ran(1))
        set_clock.advance(timedelta(seconds=1))
        await eventually(lambda: ran(2))
        assert any(r.message == "scheduled job failed" for r in caplog.records)
    finally:
        runner.cancel()


@pytest.mark.parametrize("turns", range(6))
async def test_a_job_stops_when_cancelled_as_the_clock_wakes_it(
    set_clock: Clock, turns: int
) -> None:
    """A shutdown that cancels the jobs right after a move of the clock (a test's clock reset
    in its teardown, say) must stop them: Python 3.11's ``wait_for`` returned the wake-up and
    dropped the cancellation, and the job then ran on and held the shutdown forever."""
    rounds: list[datetime] = []

    async def idle(_: async_sessionmaker[AsyncSession], now: datetime) -> int:
        rounds.append(now)
        return 0

    job = Job("idle", every=3600, run=idle)
    [runner] = Schedule([job], cast(async_sessionmaker[AsyncSession], None)).start()

    async def waiting() -> bool:
        return len(rounds) == 1

    await eventually(waiting)
    await asyncio.sleep(0)  # the runner is in its pause
    set_clock.advance(timedelta(seconds=1))  # wakes the pause from the loop's next turn
    for _ in range(turns):  # the cancellation lands at each step of the wake-up in turn
        await asyncio.sleep(0)
    runner.cancel()
    try:
        await asyncio.wait({runner}, timeout=5)  # waits without passing a cancellation on
        assert runner.cancelled()
        assert len(rounds) <= 2
    finally:
        runner.cancel()  # the defect's runner took only a second one


async def test_a_stop_lets_the_round_in_flight_finish_then_ends_the_job(set_clock: Clock) -> None:
    """A shutdown must not cut a round's transaction: its work would be lost (and on SQLite a
    connection cancelled mid-transaction could hold the process's exit forever)."""
    started, release = asyncio.Event(), asyncio.Event()
    rounds: list[str] = []

    async def slow(_: async_sessionmaker[AsyncSession], now: datetime) -> int:
        rounds.append("started")
        started.set()
        await release.wait()
        rounds.append("finished")
        return 1  # more work: only the stop ends the batches

    schedule = Schedule([Job("slow", every=3600, run=slow)], cast(Any, None))
    [runner] = schedule.start()
    try:
        await asyncio.wait_for(started.wait(), 5)
        stopping = asyncio.create_task(schedule.stop(grace=5))
        await asyncio.sleep(0.05)
        assert not stopping.done(), "the stop waits for the round"
        release.set()
        await asyncio.wait_for(stopping, 5)
        assert runner.done()
        assert not runner.cancelled()
        assert rounds == ["started", "finished"], "no round after the stop"
    finally:
        runner.cancel()


async def test_a_stop_ends_a_job_in_its_pause_at_once(set_clock: Clock) -> None:
    rounds: list[datetime] = []

    async def idle(_: async_sessionmaker[AsyncSession], now: datetime) -> int:
        rounds.append(now)
        return 0

    schedule = Schedule([Job("idle", every=3600, run=idle)], cast(Any, None))
    [runner] = schedule.start()
    try:
        await eventually(lambda: _ran(rounds))
        await asyncio.wait_for(schedule.stop(grace=3600), 5)
        assert runner.done()
        assert not runner.cancelled()
        assert len(rounds) == 1
    finally:
        runner.cancel()


async def _ran(rounds: list[datetime]) -> bool:
    return len(rounds) == 1
