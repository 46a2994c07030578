"""A real server in the test process, made as ``passpost serve`` makes it, on a free port.

For what only a real HTTP server shows: keep-alive connections, partial or oversized request
heads, sockets held open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from services.cli import server_options
from services.core.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: FastAPI, settings: Settings) -> AsyncIterator[int]:
    """Serve ``app`` (its lifespan included) with ``serve``'s options; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, **server_options(settings, "127.0.0.1", port)))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:  # uvicorn offers no event
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
