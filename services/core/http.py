"""The HTTP/1.1 protocol ``serve`` runs: uvicorn's httptools one, with bounds on request heads.

uvicorn bounds neither how long a client may take to send a request's headers (5,000 sockets
sending a partial header were held for 30 s and more: slowloris) nor how many headers or bytes
of them it sends (200 KB of headers and 20,000 headers were read and handed to the app; its
h11 protocol bounds the bytes only, and its keep-alive timeout runs only between requests).
Here a request's head must arrive whole within ``header_timeout`` seconds of its first byte
(or of the connection, for the first request), in at most ``MAX_HEADER_BYTES`` and
``MAX_HEADERS`` headers; otherwise the connection is answered 408 or 431 and closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024
"""The request line and headers together; browsers and HTTP clients send a few KB at most."""
MAX_HEADERS = 100
"""As many header fields as one request may have (the order of what proxies allow)."""
HEADER_TIMEOUT_SECONDS = 10.0
LINGER_SECONDS = 1.0
"""How long a refused connection is still read (and dropped) so the client gets the answer."""


def _plain_answer(status: bytes, text: str) -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


REQUEST_TIMEOUT = _plain_answer(b"408 Request Timeout", "the request's headers came too slowly")
HEADERS_TOO_LARGE = _plain_answer(
    b"431 Request Header Fields Too Large",
    f"at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them",
)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop reading a head past its bounds."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a deadline and a size for each request's head."""

    def __init__(
        self, *args: Any, header_timeout: float = HEADER_TIMEOUT_SECONDS, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_fields = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_fields = 0
        self._start_head_deadline()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._end_head_deadline()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # after a refusal the rest is read and dropped
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # the parser's error after our own refusal: answered already
            super().send_400_response(msg)

    def _count(self, size: int, *, fields: int) -> None:
        self._head_bytes += size
        self._head_fields += fields
        if self._head_bytes > MAX_HEADER_BYTES or self._head_fields > MAX_HEADERS:
            self._refuse(HEADERS_TOO_LARGE)
            raise _HeadTooLarge  # httptools stops parsing and raises an HttpParserError

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(
                self._header_timeout, self._refuse, REQUEST_TIMEOUT
            )

    def _end_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _refuse(self, answer: bytes) -> None:
        self._end_head_deadline()
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(answer)
        # Closed for writing only, and closed outright a little later: closing a socket with
        # unread request bytes would reset it, and the client would lose the answer.
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
