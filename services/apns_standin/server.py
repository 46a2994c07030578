"""A local stand-in for Apple's APNs provider API, for tests, the demo and the benchmarks.

It speaks raw HTTP/2 over TLS through `h2` because an ASGI server cannot play APNs: those always
end a response with an (empty) DATA frame, and aioapns drops the connection on any DATA frame
that is not a JSON reason. Like APNs, a 200 is HEADERS only (END_STREAM, `apns-id`) and an error
is HEADERS plus one JSON DATA frame `{"reason": ...}`. Faults (error answers, to a share of
requests at random too, slow answers, dropped connections, a 200 without `apns-id`, provider
tokens called expired) are programmed through the Python API of `ApnsStandin`, from the process
that runs it; none is on unless programmed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import ssl
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TextIO, cast

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.x509.oid import NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings

logger = logging.getLogger(__name__)

AuthenticatedBy = Literal["certificate", "token"]

MAX_PAYLOAD_BYTES = 4096
"""Apple's limit for every push type but VoIP."""
MAX_CONCURRENT_STREAMS = 1000
"""What APNs advertises once a connection is established."""
PROVIDER_TOKEN_LIFETIME_SECONDS = 3600
"""APNs refuses provider tokens issued more than an hour ago (403 ExpiredProviderToken)."""
_CLOCK_SKEW_SECONDS = 60
_SHUTDOWN_GRACE_SECONDS = 1.0

_DEVICE_PATH_PREFIX = "/3/device/"
_DEVICE_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
_APNS_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "complication",
        "controls",
        "fileprovider",
        "liveactivity",
        "location",
        "mdm",
        "pushtotalk",
        "voip",
        "widgets",
    }
)
_DEFAULT_REASONS = {
    400: "BadDeviceToken",
    410: "Unregistered",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    """One request as the stand-in saw it and answered it, for assertions in tests."""

    token: str
    topic: str | None
    headers: dict[str, str] = field(repr=False)
    payload: bytes = field(repr=False)
    payload_json: Any
    """The decoded payload; None when it is not JSON."""
    status: int | None
    """The status answered; None when the connection was dropped instead."""
    reason: str | None
    apns_id: str | None
    """The `apns-id` answered; None when it was omitted or the connection dropped."""
    authenticated_by: AuthenticatedBy | None
    connection: int
    """Sequence number of the TLS connection, to tell reconnections apart."""
    received_at: float


@dataclass(slots=True)
class _Failure:
    status: int
    reason: str
    remaining: int | None


@dataclass(slots=True)
class _RandomFailure:
    fraction: float
    status: int
    reason: str
    generator: random.Random


@dataclass(slots=True)
class _DropRule:
    answer_first: int
    remaining: int | None


@dataclass(slots=True)
class _IncomingRequest:
    method: str
    path: str
    headers: dict[str, str]
    duplicate_headers: bool
    body: bytearray = field(default_factory=bytearray)
    body_too_large: bool = False
    payload_json: Any = None
    """Decoded once the body is complete; None when it is not JSON."""

    @property
    def token(self) -> str:
        if not self.path.startswith(_DEVICE_PATH_PREFIX):
            return ""
        return self.path[len(_DEVICE_PATH_PREFIX) :]


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    apns_id: str | None
    body: bytes | None
    delay: float


class ApnsStandin:
    """An APNs look-alike on a local port, with programmable faults and a record of each push.

    Authentication works like APNs: a TLS client certificate (verified against
    `client_ca_file`; the topic must equal the certificate's subject UID) or, on connections
    without one, an ES256 provider token in `authorization: bearer ...`, verified against
    `token_keys` (key id -> public key) when given and only checked for shape otherwise.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        certfile: str | Path,
        keyfile: str | Path,
        client_ca_file: str | Path | None = None,
        token_keys: Mapping[str, EllipticCurvePublicKey] | None = None,
        received_limit: int | None = None,
        log_pushes: bool = False,
        record: TextIO | None = None,
    ) -> None:
        """`received_limit` keeps only the newest pushes, so long benchmarks stay flat in memory.

        `record`: where to write one JSON line per push as it is answered, for a test or a
        tool in another process (the token's last 8 characters only, as push records it)."""
        self.host = host
        self._requested_port = port
        self._token_keys = token_keys
        self._log_pushes = log_pushes
        self._record_to = record
        self._ssl_context = _server_ssl_context(certfile, keyfile, client_ca_file)
        self._server: asyncio.Server | None = None
        self._connections: set[_ApnsConnection] = set()
        self._connection_numbers = itertools.count(1)
        self.received: deque[ReceivedPush] = deque(maxlen=received_limit)
        self.push_count = 0
        """Pushes recorded since start or `reset()`, including those `received_limit` let go."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._failures: dict[str | None, _Failure] = {}
        self._delays: dict[str | None, float] = {}
        self._drops: dict[str | None, _DropRule] = {}
        self._omit_apns_id: set[str | None] = set()
        self._random_failure: _RandomFailure | None = None
        self._seen_provider_tokens: set[str] = set()
        self._expired_provider_tokens: set[str] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ApnsConnection(self), self.host, self._requested_port, ssl=self._ssl_context
        )
        logger.info("APNs stand-in listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and close every connection with GOAWAY, as APNs does on shutdown."""
        if self._server is None:
            return
        self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.go_away()
        if connections:
            await asyncio.wait(
                [connection.closed for connection in connections],
                timeout=_SHUTDOWN_GRACE_SECONDS,
            )
        for connection in connections:
            if not connection.closed.done():
                connection.abort()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the APNs stand-in is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def streams_in_progress(self) -> int:
        """Streams whose request or answer is still under way; 0 once traffic has settled."""
        return sum(connection.streams_in_progress for connection in self._connections)

    def fail(
        self,
        token: str | None,
        status: int = 410,
        reason: str | None = None,
        *,
        times: int | None = None,
    ) -> None:
        """Answer `status` and `reason` for `token` (None: every token), `times` times or always.

        The reason defaults to Apple's for 400, 410, 429, 500 and 503.
        """
        _check_times(times)
        if status < 400:
            raise ValueError(f"a failure needs an error status, not {status}")
        resolved_reason = reason or _DEFAULT_REASONS.get(status)
        if resolved_reason is None:
            raise ValueError(f"give the reason APNs sends with status {status}")
        self._failures[token] = _Failure(status, resolved_reason, times)

    def fail_randomly(
        self, fraction: float, status: int = 500, reason: str | None = None, *, seed: int = 0
    ) -> None:
        """Answer `status` to `fraction` of the requests (0 stops), chosen by a random
        generator seeded with `seed`; failures programmed with `fail` come first."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"a fraction between 0 and 1, not {fraction}")
        resolved_reason = reason or _DEFAULT_REASONS.get(status)
        if status < 400 or resolved_reason is None:
            raise ValueError(f"an error status with its reason, not {status} {reason}")
        self._random_failure = (
            _RandomFailure(fraction, status, resolved_reason, random.Random(seed))  # noqa: S311
            if fraction
            else None
        )

    def expire_provider_tokens(self) -> None:
        """Answer 403 `ExpiredProviderToken` from now on to every provider token presented so
        far, as APNs does to a token past its hour: the client must make a new one."""
        self._expired_provider_tokens |= self._seen_provider_tokens

    def delay(self, token: str | None, seconds: float) -> None:
        """Answer requests for `token` (None: every token) after `seconds`; 0 removes the delay."""
        if seconds > 0:
            self._delays[token] = seconds
        else:
            self._delays.pop(token, None)

    def drop_connection(
        self, token: str | None = None, *, after_requests: int = 0, times: int | None = 1
    ) -> None:
        """Close the connection abruptly (no GOAWAY) instead of answering a request.

        Requests for `token` (None: any token) are counted: the first `after_requests` are
        answered, then the next `times` ones (None: all) drop the connection they arrive on.
        """
        _check_times(times)
        self._drops[token] = _DropRule(after_requests, times)

    def omit_apns_id(self, token: str | None) -> None:
        """Answer 200 without `apns-id` for `token` (None: every token): aioapns hangs on it."""
        self._omit_apns_id.add(token)

    def reset(self) -> None:
        """Forget every programmed fault and every recorded push."""
        self._failures.clear()
        self._delays.clear()
        self._drops.clear()
        self._omit_apns_id.clear()
        self._random_failure = None
        self._expired_provider_tokens.clear()
        self.received.clear()
        self.push_count = 0

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - tests must never wait unbounded
    ) -> list[ReceivedPush]:
        """Wait until `count` pushes have been recorded; return those `received` holds."""
        if self.push_count < count:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((count, waiter))
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError as error:
                raise TimeoutError(
                    f"{self.push_count} of {count} pushes received after {timeout} s"
                ) from error
        return list(self.received)

    def _new_connection_number(self) -> int:
        return next(self._connection_numbers)

    def _answer(self, request: _IncomingRequest, connection: _ApnsConnection) -> _Answer | None:
        """Decide the answer to a complete request and record it; None means drop."""
        token = request.token
        if self._take_drop(token):
            self._record(request, connection, None, None, None, None)
            return None
        authenticated_by, auth_failure = connection.authenticate(request.headers)
        rejection = self._rejection(request, connection, auth_failure)
        if rejection is None:
            rejection = self._take_failure(token)
        requested_id = request.headers.get("apns-id")
        if requested_id is not None and _APNS_ID.fullmatch(requested_id):
            apns_id: str | None = requested_id
        else:
            apns_id = str(uuid.uuid4()).upper()
        delay = self._delays.get(token, self._delays.get(None, 0.0))
        if rejection is None:
            if token in self._omit_apns_id or None in self._omit_apns_id:
                apns_id = None
            self._record(request, connection, 200, None, apns_id, authenticated_by)
            return _Answer(200, apns_id, None, delay)
        status, reason = rejection
        body: dict[str, object] = {"reason": reason}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        self._record(request, connection, status, reason, apns_id, authenticated_by)
        return _Answer(status, apns_id, json.dumps(body, separators=(",", ":")).encode(), delay)

    def _take_drop(self, token: str) -> bool:
        key: str | None = token if token in self._drops else None
        rule = self._drops.get(key)
        if rule is None:
            return False
        if rule.answer_first > 0:
            rule.answer_first -= 1
            return False
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                del self._drops[key]
        return True

    def _take_failure(self, token: str) -> tuple[int, str] | None:
        key: str | None = token if token in self._failures else None
        failure = self._failures.get(key)
        if failure is None:
            chance = self._random_failure
            if chance is not None and chance.generator.random() < chance.fraction:
                return chance.status, chance.reason
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self._failures[key]
        return failure.status, failure.reason

    def _rejection(
        self, request: _IncomingRequest, connection: _ApnsConnection, auth_failure: str | None
    ) -> tuple[int, str] | None:
        """The status and reason APNs would give a malformed or unauthorized request."""
        if request.method != "POST":
            return 405, "MethodNotAllowed"
        if not request.path.startswith(_DEVICE_PATH_PREFIX):
            return 404, "BadPath"
        if not request.token:
            return 400, "MissingDeviceToken"
        if request.duplicate_headers:
            return 400, "DuplicateHeaders"
        if auth_failure is not None:
            return 403, auth_failure
        topic = request.headers.get("apns-topic")
        if not topic:
            return 400, "MissingTopic"
        if connection.has_client_certificate and topic != connection.certificate_uid:
            return 400, "TopicDisallowed"
        if not _DEVICE_TOKEN.fullmatch(request.token):
            return 400, "BadDeviceToken"
        apns_id = request.headers.get("apns-id")
        if apns_id is not None and not _APNS_ID.fullmatch(apns_id):
            return 400, "BadMessageId"
        push_type = request.headers.get("apns-push-type")
        if push_type is not None and push_type not in _PUSH_TYPES:
            return 400, "InvalidPushType"
        if request.body_too_large:
            return 413, "PayloadTooLarge"
        if not request.body:
            return 400, "PayloadEmpty"
        if not isinstance(request.payload_json, dict):
            # Apple documents no reason for a body that is not a JSON object: this one is ours.
            return 400, "BadPayload"
        return None

    def _record(
        self,
        request: _IncomingRequest,
        connection: _ApnsConnection,
        status: int | None,
        reason: str | None,
        apns_id: str | None,
        authenticated_by: AuthenticatedBy | None,
    ) -> None:
        push = ReceivedPush(
            token=request.token,
            topic=request.headers.get("apns-topic"),
            headers=request.headers,
            payload=bytes(request.body),
            payload_json=request.payload_json,
            status=status,
            reason=reason,
            apns_id=apns_id,
            authenticated_by=authenticated_by,
            connection=connection.number,
            received_at=time.time(),
        )
        self.received.append(push)
        self.push_count += 1
        if self._record_to is not None:
            self._record_to.write(json.dumps(_record_line(push), separators=(",", ":")) + "\n")
            self._record_to.flush()
        if self._log_pushes:
            logger.info(
                "push to ..%s topic=%s status=%s reason=%s auth=%s connection=%d",
                push.token[-8:],
                push.topic,
                "dropped" if status is None else status,
                reason,
                authenticated_by,
                push.connection,
            )
        if self._waiters:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiting = []
        for count, waiter in self._waiters:
            if waiter.done():
                continue
            if self.push_count >= count:
                waiter.set_result(None)
            else:
                waiting.append((count, waiter))
        self._waiters = waiting


class _ApnsConnection(asyncio.Protocol):
    """One client's TLS connection: HTTP/2 framing, flow control and per-stream bookkeeping."""

    def __init__(self, standin: ApnsStandin) -> None:
        self._standin = standin
        self.number = standin._new_connection_number()
        self._h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self._h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
            },
        )
        self._transport: asyncio.Transport | None = None
        self._dropped = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.has_client_certificate = False
        self.certificate_uid: str | None = None
        self._accepted_provider_token: tuple[str, int] | None = None
        self._requests: dict[int, _IncomingRequest] = {}
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._unsent_bodies: dict[int, bytes] = {}

    @property
    def streams_in_progress(self) -> int:
        return len(self._requests) + len(self._delayed) + len(self._unsent_bodies)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)
        self._standin._connections.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if certificate:
            self.has_client_certificate = True
            self.certificate_uid = _certificate_uid(certificate)
        logger.debug(
            "connection %d opened (client certificate: %s)",
            self.number,
            self.has_client_certificate,
        )
        self._h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        self._requests.clear()
        self._unsent_bodies.clear()
        self._standin._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        logger.debug("connection %d closed (%s)", self.number, exc or "cleanly")

    def data_received(self, data: bytes) -> None:
        if self._dropped:
            return
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as error:
            logger.warning("connection %d: HTTP/2 protocol error: %s", self.number, error)
            self._flush()
            self._close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._on_request(event.stream_id, event.headers)
            elif isinstance(event, DataReceived):
                self._on_data(event.stream_id, event.data, event.flow_controlled_length)
            elif isinstance(event, StreamEnded):
                self._on_request_complete(event.stream_id)
                if self._dropped:
                    return
            elif isinstance(event, StreamReset):
                self._forget_stream(event.stream_id)
            elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
                self._send_unsent_bodies()
            elif isinstance(event, ConnectionTerminated):
                self._flush()
                self._close()
                return
        self._flush()

    def authenticate(self, headers: Mapping[str, str]) -> tuple[AuthenticatedBy | None, str | None]:
        """Who the request is from, or the APNs reason why that is unknown."""
        if self.has_client_certificate:
            return "certificate", None
        authorization = headers.get("authorization")
        if authorization is None:
            return None, "MissingProviderToken"
        now = int(time.time())
        if self._accepted_provider_token and self._accepted_provider_token[0] == authorization:
            issued_at = self._accepted_provider_token[1]
        else:
            checked = _provider_token_issued_at(authorization, self._standin._token_keys, now)
            if checked is None:
                return None, "InvalidProviderToken"
            issued_at = checked
            self._accepted_provider_token = (authorization, issued_at)
        self._standin._seen_provider_tokens.add(authorization)
        if (
            issued_at < now - PROVIDER_TOKEN_LIFETIME_SECONDS
            or authorization in self._standin._expired_provider_tokens
        ):
            return None, "ExpiredProviderToken"
        return "token", None

    def go_away(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._h2.close_connection(error_code=ErrorCodes.NO_ERROR)
        self._flush()
        self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _on_request(self, stream_id: int, raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        names = [name.decode() for name, _ in raw_headers]
        headers = {name.decode(): value.decode("utf-8", "replace") for name, value in raw_headers}
        self._requests[stream_id] = _IncomingRequest(
            method=headers.get(":method", ""),
            path=headers.get(":path", ""),
            headers=headers,
            duplicate_headers=len(set(names)) != len(names),
        )

    def _on_data(self, stream_id: int, data: bytes, flow_controlled_length: int) -> None:
        if flow_controlled_length:
            self._h2.acknowledge_received_data(flow_controlled_length, stream_id)
        request = self._requests.get(stream_id)
        if request is None or request.body_too_large:
            return
        if len(request.body) + len(data) > MAX_PAYLOAD_BYTES:
            request.body_too_large = True
            request.body.clear()
        else:
            request.body += data

    def _on_request_complete(self, stream_id: int) -> None:
        request = self._requests.pop(stream_id, None)
        if request is None:
            return
        request.payload_json = _decode_json(request.body)
        answer = self._standin._answer(request, self)
        if answer is None:
            self._drop()
        elif answer.delay > 0:
            self._delayed[stream_id] = asyncio.get_running_loop().call_later(
                answer.delay, self._send_delayed_answer, stream_id, answer
            )
        else:
            self._send_answer(stream_id, answer)

    def _send_delayed_answer(self, stream_id: int, answer: _Answer) -> None:
        del self._delayed[stream_id]
        self._send_answer(stream_id, answer)
        self._flush()

    def _send_answer(self, stream_id: int, answer: _Answer) -> None:
        headers = [(":status", str(answer.status))]
        if answer.apns_id is not None:
            headers.append(("apns-id", answer.apns_id))
        try:
            if answer.body is None:
                self._h2.send_headers(stream_id, headers, end_stream=True)
                return
            headers.append(("content-type", "application/json"))
            self._h2.send_headers(stream_id, headers)
            self._send_body(stream_id, answer.body)
        except StreamClosedError:
            self._forget_stream(stream_id)

    def _send_body(self, stream_id: int, body: bytes) -> None:
        """Send what the peer's flow-control window allows; the rest waits for WINDOW_UPDATE."""
        while body:
            size = min(
                len(body),
                self._h2.local_flow_control_window(stream_id),
                self._h2.max_outbound_frame_size,
            )
            if size <= 0:
                self._unsent_bodies[stream_id] = body
                return
            self._h2.send_data(stream_id, body[:size], end_stream=size == len(body))
            body = body[size:]

    def _send_unsent_bodies(self) -> None:
        waiting = self._unsent_bodies
        self._unsent_bodies = {}
        for stream_id, body in waiting.items():
            try:
                self._send_body(stream_id, body)
            except StreamClosedError:
                self._forget_stream(stream_id)

    def _forget_stream(self, stream_id: int) -> None:
        self._requests.pop(stream_id, None)
        self._unsent_bodies.pop(stream_id, None)
        timer = self._delayed.pop(stream_id, None)
        if timer is not None:
            timer.cancel()

    def _drop(self) -> None:
        """Send what is already answered, then cut the connection like a network failure."""
        logger.debug("connection %d dropped on purpose", self.number)
        self._dropped = True
        self._flush()
        self.abort()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _record_line(push: ReceivedPush) -> dict[str, Any]:
    return {
        "token_suffix": push.token[-8:],
        "topic": push.topic,
        "status": push.status,
        "reason": push.reason,
        "apns_id": push.apns_id,
        "connection": push.connection,
        "received_at": push.received_at,
    }


def _check_times(times: int | None) -> None:
    if times is not None and times < 1:
        raise ValueError(f"times must be at least 1, or None for always; not {times}")


def _server_ssl_context(
    certfile: str | Path, keyfile: str | Path, client_ca_file: str | Path | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["h2"])
    if client_ca_file is not None:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _certificate_uid(der: bytes) -> str | None:
    """The subject UID, which APNs takes as the only topic a certificate may push to."""
    certificate = x509.load_der_x509_certificate(der)
    attributes = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode()


def _provider_token_issued_at(
    authorization: str, token_keys: Mapping[str, EllipticCurvePublicKey] | None, now: int
) -> int | None:
    """The `iat` of a well-formed ES256 provider token (verified when keys are known), or None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        header = jwt.get_unverified_header(token)
        key_id = header.get("kid")
        if header.get("alg") != "ES256" or not isinstance(key_id, str):
            return None
        if token_keys is None:
            claims = jwt.decode(token, options={"verify_signature": False})
        else:
            key = token_keys.get(key_id)
            if key is None:
                return None
            claims = jwt.decode(token, key, algorithms=["ES256"], leeway=_CLOCK_SKEW_SECONDS)
    except jwt.InvalidTokenError:
        return None
    issued_at = claims.get("iat")
    if not isinstance(claims.get("iss"), str) or not isinstance(issued_at, int):
        return None
    if issued_at > now + _CLOCK_SKEW_SECONDS:
        return None
    return issued_at


def _decode_json(body: bytes | bytearray) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


async def main(
    host: str,
    port: int,
    certfile: str | Path,
    keyfile: str | Path,
    client_ca_file: str | Path | None = None,
    *,
    token_keys: Mapping[str, EllipticCurvePublicKey] | None = None,
    record: TextIO | None = None,
) -> None:
    """Run the stand-in until cancelled, logging one line per push (`passpost apns-mock`),
    and writing one JSON line per push to ``record`` when given."""
    async with ApnsStandin(
        host,
        port,
        certfile=certfile,
        keyfile=keyfile,
        client_ca_file=client_ca_file,
        token_keys=token_keys,
        log_pushes=True,
        record=record,
    ):
        await asyncio.Event().wait()
