"""Sending pushes to APNs through aioapns, behind a small interface of our own.

aioapns is the design's client; these are its known faults and what guards each:
- no per-request timeout, and a 200 without ``apns-id`` waits forever: every send is bounded by
  ``asyncio.timeout`` (in the sending task: ``wait_for`` would cost a task per push);
- per-stream state (``request_streams``) is kept until the connection closes: our protocol drops
  it when a stream ends, and connections are recycled after a number of requests anyway;
- DATA frames (error bodies) are never acknowledged, so a connection's flow-control window runs
  dry after enough errors: our protocol acknowledges them;
- a request timed out leaves a cancelled future that breaks the connection's clean-up when it
  is lost, and whose late answer raises in ``data_received``, which closes the connection with
  every push in flight on it: our protocol drops such futures first;
- on a dropped connection aioapns resends at once, so a push APNs already accepted could go
  twice: our send path (``_PassProtocol.send_push``) sends each push once, and we retry with
  backoff ourselves;
- its pool puts every push on one connection until that one is full (~1,000 streams): ours
  spreads a fan-out over the merchant's connections (``_Pool.connection``);
- its provider token is renewed every 30 minutes by the clock only, so a token APNs calls
  expired (``403 ExpiredProviderToken``) would be sent again until then: ``ProviderToken``
  renews it on that answer (and the push is retried like any other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

import jwt
from aioapns.common import NotificationResult
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsBaseConnectionPool,
    APNsProductionClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import NoAvailableStreamIDError
from hpack import HeaderTuple, NeverIndexedHeaderTuple

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApnsCredentials:
    """How one merchant authenticates: its pass type certificate, or a .p8 token key."""

    auth: Literal["certificate", "token"]
    key_path: str
    certificate_path: str | None = None
    key_id: str | None = None
    team_id: str | None = None

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> ApnsCredentials:
        return cls(
            auth=data["auth"],
            key_path=data["key_path"],
            certificate_path=data.get("certificate_path"),
            key_id=data.get("key_id"),
            team_id=data.get("team_id"),
        )


@dataclass(frozen=True, slots=True)
class ApnsResult:
    """What APNs said; ``status`` 0 means no answer (timeout or dropped connection)."""

    status: int
    reason: str | None = None
    apns_id: str | None = None
    timestamp: int | None = None

    @property
    def delivered(self) -> bool:
        return self.status == 200

    @property
    def token_is_dead(self) -> bool:
        """APNs will never accept this token again: forget the registration."""
        return (self.status == 410 and self.reason == "Unregistered") or (
            self.status == 400 and self.reason == "BadDeviceToken"
        )


class ApnsSender(Protocol):
    async def send(
        self, credentials: ApnsCredentials, token: str, topic: str, apns_id: str
    ) -> ApnsResult:
        """Send the empty pass-update push ``{}`` for ``topic`` to ``token``, as ``apns_id``."""

    async def close(self) -> None: ...


_H2_CLIENT = H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
"""h2 checks and normalises every header we send (a fifth of a push's CPU in the push process):
ours are built below from fixed lowercase names, a token the registration held to hex, a UUID
and a topic, so they need neither. What APNs sends us is still checked."""
_PUSH_BODY = b"{}"
"""Wallet's documented push: the empty JSON object, the same bytes every time."""


class _PassProtocol(APNsProductionClientProtocol):
    """aioapns's protocol with its per-stream leak and flow-control stall mended, its writes
    coalesced, and a send path of its own for the one push a pass gets (``send_push``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = H2Connection(_H2_CLIENT)
        self._flush_due = False
        self._fixed_headers = (
            HeaderTuple(b":method", b"POST"),
            HeaderTuple(b":scheme", b"https"),
        )
        self._host = HeaderTuple(b"host", self.APNS_SERVER.encode())

    @property
    def in_flight(self) -> int:
        """Streams sent and not yet answered."""
        return len(self.requests)

    async def send_push(self, token: str, topic: str, apns_id: str) -> NotificationResult:
        """aioapns's ``send_notification`` for ``{}`` with topic and id only: the path and the
        id differ on every push, so they stay out of the HPACK table (where each would evict
        another and never be used again); the rest is indexed once per connection."""
        stream_id = await self.free_channels.acquire()
        headers = [
            *self._fixed_headers,
            NeverIndexedHeaderTuple(b":path", b"/3/device/" + token.encode()),
            self._host,
            NeverIndexedHeaderTuple(b"apns-id", apns_id.encode()),
            HeaderTuple(b"apns-topic", topic.encode()),
        ]
        if self.auth_provider is not None:
            # Never indexed, as h2 keeps authorization headers unless told otherwise.
            headers.append(
                NeverIndexedHeaderTuple(b"authorization", self.auth_provider.get_header().encode())
            )
        self.conn.send_headers(stream_id, headers)
        self.conn.send_data(stream_id, _PUSH_BODY, end_stream=True)
        self.flush()
        answer: asyncio.Future[NotificationResult] = self.loop.create_future()
        self.requests[apns_id] = answer
        self.request_streams[stream_id] = apns_id
        return await answer

    def flush(self) -> None:
        """Write what h2 has queued once per event-loop turn, not once per request: aioapns
        flushes after every push (a TLS record, a write and a new inactivity timer each); the
        bytes and their order are the same, only gathered."""
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False
        if self.transport is not None and not self.transport.is_closing():
            super().flush()

    def on_response_received(self, headers: dict[bytes, bytes]) -> None:
        self._forget_abandoned(headers.get(b"apns-id", b"").decode("utf8"))
        super().on_response_received(headers)

    def _forget_abandoned(self, notification_id: str | None) -> None:
        """A request we timed out is answered late: aioapns would set the result of its
        cancelled future, which raises and takes the connection down."""
        future = self.requests.get(notification_id or "")
        if future is not None and future.done():
            del self.requests[notification_id or ""]

    def on_data_received(self, raw_data: bytes, stream_id: int) -> None:
        self.conn.acknowledge_received_data(len(raw_data), stream_id)
        self._forget_abandoned(self.request_streams.get(stream_id))
        try:
            super().on_data_received(raw_data, stream_id)
        except ValueError:  # not JSON: answer the stream instead of killing the connection
            log.warning("APNs sent a body that is not JSON")

    def connection_lost(self, exc: Exception | None) -> None:
        # Requests we timed out left cancelled futures behind; aioapns would fail setting an
        # exception on them and never wake the tasks waiting for a free stream.
        for notification_id, future in list(self.requests.items()):
            if future.done():
                del self.requests[notification_id]
        super().connection_lost(exc)

    def on_stream_ended(self, stream_id: int) -> None:
        self.request_streams.pop(stream_id, None)
        super().on_stream_ended(stream_id)


def protocol_for(url: str) -> type[APNsProductionClientProtocol]:
    """aioapns takes no host or port: a protocol subclass carries them."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"PASSPOST_APNS_URL must be an https:// URL, not {url!r}")
    attributes = {"APNS_SERVER": parts.hostname, "APNS_PORT": parts.port or 443}
    return type("EndpointProtocol", (_PassProtocol,), attributes)


class ProviderToken(AuthorizationHeaderProvider):
    """A merchant's provider token (an ES256 JWT), made anew every ``LIFETIME`` seconds, as
    aioapns does, and when APNs answers ``ExpiredProviderToken`` (``expired``).

    Renewed on that answer at most once a ``RENEWAL_PAUSE``: every push in flight with the old
    token is answered the same, and APNs refuses tokens changed too often
    (``TooManyProviderTokenUpdates``; Apple asks for no more than one update in 20 minutes,
    which the lifetime keeps to).
    """

    LIFETIME = 30 * 60
    RENEWAL_PAUSE = 60

    def __init__(
        self, key: str, key_id: str | None, team_id: str | None, *, clock: Callable[[], float]
    ) -> None:
        self._key, self._key_id, self._team_id = key, key_id, team_id
        self._clock = clock
        self._header: str | None = None
        self._issued_at = 0.0
        self._renewed_for_expiry_at: float | None = None

    def get_header(self) -> str:
        now = self._clock()
        if self._header is None or now - self._issued_at >= self.LIFETIME:
            self._issued_at = now
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._header = f"bearer {token}"
        return self._header

    def expired(self) -> None:
        """APNs called the token expired: the next push carries a new one."""
        now = self._clock()
        last = self._renewed_for_expiry_at
        if last is None or now - last >= self.RENEWAL_PAUSE:
            self._renewed_for_expiry_at = now
            self._header = None
            log.warning("APNs called the provider token expired; renewing it")


class _Pool(APNsBaseConnectionPool):
    """One merchant's connections, authenticated by certificate (TLS) or by token (JWT).

    aioapns fills one connection up to the server's stream limit (APNs allows ~1,000) before
    it opens another, so a merchant's pushes all wait on one connection's round trips. Here a
    push goes on the connection with the fewest in flight, and another connection is opened
    (up to ``max_connections``) once every open one has ``SPREAD_ABOVE`` in flight: pushes
    sent one by one keep one connection, a fan-out spreads over several."""

    SPREAD_ABOVE = 32

    def __init__(
        self,
        protocol: type[APNsProductionClientProtocol],
        ssl_context: ssl.SSLContext,
        topic: str,
        max_connections: int,
        auth_provider: ProviderToken | None,
    ) -> None:
        super().__init__(topic=topic, max_connections=max_connections, max_connection_attempts=1)
        self.protocol_class = protocol
        self.ssl_context = ssl_context
        self.auth_provider = auth_provider
        self.requests_sent = 0
        self._topic = topic
        self._opening: asyncio.Future[None] | None = None

    async def connection(self) -> _PassProtocol:
        """The connection the next push goes on (see the class's docstring)."""
        while True:
            connections = cast(list[_PassProtocol], self.connections)
            quietest = min(connections, key=lambda c: c.in_flight, default=None)
            if quietest is not None and (
                quietest.in_flight < self.SPREAD_ABOVE or len(connections) >= self.max_connections
            ):
                return quietest
            if self._opening is None:
                self._opening = asyncio.ensure_future(self._open())
            try:
                # Then choose again: the pushes that waited for it fill it up to the threshold.
                await asyncio.shield(self._opening)
            except Exception:
                if quietest is None:
                    raise
                return quietest  # the open ones carry on

    async def _open(self) -> None:
        try:
            connection = await self.create_connection()
        except Exception as exc:
            log.warning("APNs connection not opened", extra={"error": repr(exc)[:300]})
            raise ConnectionError() from exc
        finally:
            self._opening = None
        self.connections.append(connection)

    async def create_connection(self) -> APNsBaseClientProtocol:
        factory = partial(
            self.protocol_class,
            self._topic,
            self.loop,
            self.discard_connection,  # type: ignore[arg-type]  # aioapns says NoReturn
            self.auth_provider,
        )
        _, connection = await self.loop.create_connection(
            factory,
            host=self.protocol_class.APNS_SERVER,
            port=self.protocol_class.APNS_PORT,
            ssl=self.ssl_context,
        )
        return connection


class AioApnsSender:
    """Sends through one aioapns pool per credentials, each recycled after ``recycle_after``."""

    def __init__(
        self,
        url: str,
        *,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        max_connections: int = 4,
        recycle_after: int = 50_000,
    ) -> None:
        self._protocol = protocol_for(url)
        self._ca_file = ca_file
        self._timeout = timeout
        self._max_connections = max_connections
        self._recycle_after = recycle_after
        self._pools: dict[tuple[ApnsCredentials, str], _Pool] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def _ssl_context(self, credentials: ApnsCredentials) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self._ca_file is not None:
            context.load_verify_locations(cafile=str(self._ca_file))
        context.set_alpn_protocols(["h2"])
        if credentials.auth == "certificate":
            context.load_cert_chain(str(credentials.certificate_path), credentials.key_path)
        return context

    def _pool(self, credentials: ApnsCredentials, topic: str) -> _Pool:
        key = (credentials, topic)
        pool = self._pools.get(key)
        if pool is not None and pool.requests_sent >= self._recycle_after:
            self._retire(pool)
            pool = None
        if pool is None:
            auth = None
            if credentials.auth == "token":
                auth = ProviderToken(
                    Path(credentials.key_path).read_text(),
                    credentials.key_id,
                    credentials.team_id,
                    clock=time.time,
                )
            pool = _Pool(
                self._protocol, self._ssl_context(credentials), topic, self._max_connections, auth
            )
            self._pools[key] = pool
        return pool

    def _retire(self, pool: _Pool) -> None:
        """Close a pool once its in-flight requests had time to finish."""

        async def later() -> None:
            await asyncio.sleep(self._timeout)
            pool.close()

        task = asyncio.create_task(later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def send(
        self, credentials: ApnsCredentials, token: str, topic: str, apns_id: str
    ) -> ApnsResult:
        pool = self._pool(credentials, topic)
        pool.requests_sent += 1
        try:
            async with asyncio.timeout(self._timeout):
                connection = await pool.connection()
                try:
                    result = await connection.send_push(token, topic, apns_id)
                except NoAvailableStreamIDError:  # a connection's stream ids last ~1bn pushes
                    connection.close()
                    raise
        except TimeoutError:
            return ApnsResult(status=0, reason="Timeout")
        except (ConnectionClosed, NoAvailableStreamIDError, ConnectionError, OSError) as exc:
            return ApnsResult(status=0, reason=f"ConnectionError: {type(exc).__name__}")
        if result.description == "ExpiredProviderToken" and pool.auth_provider is not None:
            pool.auth_provider.expired()
        return ApnsResult(
            status=int(result.status or 0),
            reason=result.description,
            apns_id=result.notification_id,
            timestamp=result.timestamp,
        )

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        for task in list(self._retiring):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._retiring, return_exceptions=True)
