"""What every push worker shares: the wake-up it sleeps on."""

from __future__ import annotations

import asyncio

from services.push.workers import Wakeup


async def test_a_worker_woken_as_it_is_cancelled_still_stops() -> None:
    """Shutdown cancels the workers; a commit may wake one in the same loop turn."""
    wakeup = Wakeup()
    sleeping = asyncio.create_task(wakeup.wait(30))
    await asyncio.sleep(0)  # let it start waiting
    wakeup.set()
    sleeping.cancel()
    await asyncio.wait({sleeping}, timeout=5)
    assert sleeping.cancelled()


async def test_a_wakeup_ends_the_wait_and_is_then_cleared() -> None:
    wakeup = Wakeup()
    wakeup.set()
    await asyncio.wait_for(wakeup.wait(30), 5)
    waiting = asyncio.create_task(wakeup.wait(30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    waiting.cancel()
    await asyncio.wait({waiting})
