"""Waiting for work the queue does in the background, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail with TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110  (polling the database or an HTTP answer)
            await asyncio.sleep(0.05)
