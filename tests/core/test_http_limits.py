"""Request heads are bounded in time, bytes and fields, on a real server (raw sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from services.cli import ServiceName, components_of
from services.core.http import MAX_HEADER_BYTES, MAX_HEADERS
from services.core.settings import Settings
from services.core.web import create_app
from tests.serving import serving

HEADER_TIMEOUT = 0.5


@pytest.fixture
async def port(settings: Settings) -> AsyncIterator[int]:
    settings = settings.model_copy(update={"http_header_timeout": HEADER_TIMEOUT})
    app = create_app(settings, components_of(ServiceName.all, settings))
    async with serving(app, settings) as port:
        yield port


async def _exchange(port: int, head: bytes) -> bytes:
    """Send ``head`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    return answer


async def test_a_complete_head_within_bounds_is_served(port: int) -> None:
    fields = b"".join(b"x-field-%d: %d\r\n" % (i, i) for i in range(MAX_HEADERS - 2))
    answer = await _exchange(
        port, b"GET /healthz HTTP/1.1\r\nhost: a\r\n" + fields + b"connection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_200_kb_of_headers_is_refused(port: int) -> None:
    big = b"x-big: " + b"a" * 200_000 + b"\r\n"
    answer = await _exchange(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\n" + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert str(MAX_HEADER_BYTES).encode() in answer


async def test_20000_headers_are_refused(port: int) -> None:
    many = b"".join(b"x-%d: 1\r\n" % i for i in range(20_000))
    answer = await _exchange(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_sockets_holding_partial_heads_are_dropped_while_others_are_served(
    port: int,
) -> None:
    """Slowloris: 300 sockets each send the start of a head and wait; one more sends a byte
    every tenth of a second, past the timeout. All are answered 408 and closed, and a whole
    request meanwhile gets its answer."""
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
    for _reader, writer in opened:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: a\r\nx-slow: ")
    started = time.monotonic()

    async def trickle() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nx-slow: ")
        while time.monotonic() - started < 10:
            writer.write(b"x")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):  # the client's pace: a byte a tenth of a second
                    return await reader.read(65536)
        return b""

    trickling = asyncio.create_task(trickle())
    served = await _exchange(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    assert served.startswith(b"HTTP/1.1 200 ")
    async with asyncio.timeout(10):
        answers = [await reader.read() for reader, _writer in opened]
        trickled = await trickling
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    assert trickled.startswith(b"HTTP/1.1 408 ")
    for _reader, writer in opened:
        writer.close()


async def test_a_keep_alive_connection_gets_a_new_deadline_per_request(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(3):
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n")
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.startswith(b"content-length")
            )
            await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # and then nothing more
    async with asyncio.timeout(10):
        assert (await reader.read()).startswith(b"HTTP/1.1 408 ")
    writer.close()
