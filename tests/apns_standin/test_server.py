"""The APNs stand-in, driven by the real aioapns client and, for frame-level facts, by raw h2."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import ipaddress
import json
import logging
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aioapns import APNs, NotificationRequest
from aioapns.common import NotificationResult
from aioapns.connection import APNsProductionClientProtocol
from aioapns.exceptions import MaxAttemptsExceeded
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    ResponseReceived,
    StreamEnded,
)
from h2.settings import SettingCodes, Settings

from services.apns_standin import ApnsStandin, main

TOPIC = "pass.test.example"
TOKEN = "ab" * 32
OTHER_TOKEN = "cd" * 32
KEY_ID = "KEY1234567"
TEAM_ID = "TEAM123456"
TIMEOUT = 5.0
SLOW_TIMEOUT = 60.0
"""For the tests that push a thousand and more: a deadline, never a speed expectation."""


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_pem: Path
    """Client certificate and key in one file, as aioapns loads it."""
    client_cert: Path
    client_key: Path
    provider_key: ec.EllipticCurvePrivateKey
    """The .p8-style key that signs provider tokens (JWT)."""


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a pass-type-style client one."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stand-in Test CA")])
    ca = _issue(
        ca_name, ca_key, ca_name, ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)]
    )
    not_ca = (x509.BasicConstraints(ca=False, path_length=None), True)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        server_key,
        ca_name,
        ca_key,
        [
            not_ca,
            (
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )

    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(
        x509.Name(
            [
                x509.NameAttribute(NameOID.USER_ID, TOPIC),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Pass Type ID: {TOPIC}"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, TEAM_ID),
            ]
        ),
        client_key,
        ca_name,
        ca_key,
        [not_ca, (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    client_cert_pem = client.public_bytes(serialization.Encoding.PEM)
    return Pki(
        ca_file=write("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        server_cert=write("server.pem", server.public_bytes(serialization.Encoding.PEM)),
        server_key=write("server.key", _pem(server_key)),
        client_pem=write("client-with-key.pem", client_cert_pem + _pem(client_key)),
        client_cert=write("client.pem", client_cert_pem),
        client_key=write("client.key", _pem(client_key)),
        provider_key=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
async def standin(pki: Pki) -> AsyncIterator[ApnsStandin]:
    async with ApnsStandin(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        client_ca_file=pki.ca_file,
        token_keys={KEY_ID: pki.provider_key.public_key()},
    ) as standin:
        yield standin


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["h2"])
    return context


class AcknowledgingProtocol(APNsProductionClientProtocol):
    """aioapns as-is never hands back flow-control credit for the DATA it reads.

    So after 64 KiB of error reasons on one connection (about 1,285 answers 410) the server may
    not send another one and every later error result hangs. Acknowledging fixes that.
    """

    def on_data_received(self, raw_data: bytes, stream_id: int) -> None:
        super().on_data_received(raw_data, stream_id)
        self.conn.acknowledge_received_data(len(raw_data), stream_id)


def standin_apns(
    port: int,
    ca_file: Path,
    protocol: type[APNsProductionClientProtocol] = APNsProductionClientProtocol,
    **credentials: Any,
) -> APNs:
    """An aioapns client aimed at the stand-in: aioapns has no host or port argument.

    Call it inside the running event loop: the pool binds to the loop it is created in.
    """

    class StandinProtocol(protocol):  # type: ignore[valid-type,misc]
        APNS_SERVER = "127.0.0.1"
        APNS_PORT = port

    apns = APNs(use_sandbox=False, ssl_context=client_ssl_context(ca_file), **credentials)
    apns.pool.protocol_class = StandinProtocol
    return apns


async def close_apns(apns: APNs) -> None:
    apns.pool.close()
    async with asyncio.timeout(TIMEOUT):
        while apns.pool.connections:  # noqa: ASYNC110 - aioapns has nothing to await
            await asyncio.sleep(0.01)


async def ignore_error(request: NotificationRequest, result: NotificationResult) -> None:
    """Keeps aioapns from logging each expected error."""


@pytest.fixture
async def cert_apns(standin: ApnsStandin, pki: Pki) -> AsyncIterator[APNs]:
    apns = standin_apns(standin.port, pki.ca_file, client_cert=str(pki.client_pem), topic=TOPIC)
    yield apns
    await close_apns(apns)


def provider_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return _pem(key).decode()


async def send(apns: APNs, token: str = TOKEN, **options: Any) -> Any:
    request = NotificationRequest(device_token=token, message={}, **options)
    return await asyncio.wait_for(apns.send_notification(request), TIMEOUT)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    ended_on_headers: bool
    data_frames: list[bytes] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(b"".join(self.data_frames))


class RawH2Client:
    """A bare HTTP/2 client, for what aioapns hides: frames, END_STREAM, PING, GOAWAY."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        h2: H2Connection,
        acknowledge_data: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2
        self.acknowledge_data = acknowledge_data
        self.responses: dict[int, RawResponse] = {}
        self.ended: set[int] = set()
        self.ping_acks = 0
        self.terminated: ConnectionTerminated | None = None

    @classmethod
    async def connect(
        cls,
        standin: ApnsStandin,
        pki: Pki,
        *,
        with_certificate: bool = True,
        initial_window_size: int | None = None,
        acknowledge_data: bool = True,
    ) -> RawH2Client:
        context = client_ssl_context(pki.ca_file)
        if with_certificate:
            context.load_cert_chain(pki.client_cert, pki.client_key)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", standin.port, ssl=context), TIMEOUT
        )
        h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        if initial_window_size is not None:
            h2.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size}
            )
        h2.initiate_connection()
        writer.write(h2.data_to_send())
        return cls(reader, writer, h2, acknowledge_data)

    def send(
        self,
        token: str = TOKEN,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"{}",
        method: str = "POST",
        path: str | None = None,
    ) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        request_headers = [
            (":method", method),
            (":scheme", "https"),
            (":path", path or f"/3/device/{token}"),
            (":authority", "127.0.0.1"),
            *(headers if headers is not None else {"apns-topic": TOPIC}).items(),
        ]
        self.h2.send_headers(stream_id, request_headers, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        self.writer.write(self.h2.data_to_send())
        return stream_id

    async def response(self, stream_id: int) -> RawResponse:
        await self.pump(lambda: stream_id in self.ended)
        return self.responses[stream_id]

    async def request(self, token: str = TOKEN, **options: Any) -> RawResponse:
        return await self.response(self.send(token, **options))

    async def pump(self, done: Callable[[], bool]) -> None:
        """Read and handle frames until `done()`; a closed connection raises ConnectionError."""
        async with asyncio.timeout(TIMEOUT):
            while not done():
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the stand-in closed the connection")
                for event in self.h2.receive_data(data):
                    self._handle(event)
                self.writer.write(self.h2.data_to_send())

    def _handle(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            headers = {name.decode(): value.decode() for name, value in event.headers}
            self.responses[event.stream_id] = RawResponse(
                status=int(headers[":status"]),
                headers=headers,
                ended_on_headers=event.stream_ended is not None,
            )
        elif isinstance(event, DataReceived):
            self.responses[event.stream_id].data_frames.append(event.data)
            if self.acknowledge_data:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, PingAckReceived):
            self.ping_acks += 1
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):  # the stand-in may have cut the connection already
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)


@pytest.fixture
async def raw_client(standin: ApnsStandin, pki: Pki) -> AsyncIterator[RawH2Client]:
    client = await RawH2Client.connect(standin, pki)
    yield client
    await client.close()


def provider_token(key: ec.EllipticCurvePrivateKey, *, issued_at: int | None = None) -> str:
    claims = {"iss": TEAM_ID, "iat": int(time.time()) if issued_at is None else issued_at}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KEY_ID})


async def test_success_echoes_the_apns_id_and_is_recorded(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    notification_id = str(uuid.uuid4())

    result = await send(cert_apns, notification_id=notification_id)

    assert result.is_successful
    assert result.notification_id == notification_id
    [push] = await standin.wait_for(1, timeout=TIMEOUT)
    assert push.token == TOKEN
    assert push.topic == TOPIC
    assert push.payload == b"{}"
    assert push.payload_json == {}
    assert push.status == 200
    assert push.reason is None
    assert push.apns_id == notification_id
    assert push.authenticated_by == "certificate"
    assert push.headers["apns-topic"] == TOPIC


async def test_success_is_headers_only_with_a_new_uppercase_apns_id(
    raw_client: RawH2Client,
) -> None:
    response = await raw_client.request()

    assert response.status == 200
    assert response.ended_on_headers
    assert response.data_frames == []
    apns_id = response.headers["apns-id"]
    assert apns_id == apns_id.upper()
    assert uuid.UUID(apns_id)


async def test_alpn_negotiates_h2(raw_client: RawH2Client) -> None:
    await raw_client.request()

    assert raw_client.writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"


async def test_topic_must_equal_the_certificate_uid(standin: ApnsStandin, cert_apns: APNs) -> None:
    result = await send(cert_apns, apns_topic="pass.someone.else")

    assert (result.status, result.description) == ("400", "TopicDisallowed")
    assert standin.received[-1].status == 400


async def test_error_is_headers_then_one_json_data_frame(raw_client: RawH2Client) -> None:
    sent_id = str(uuid.uuid4())

    response = await raw_client.request(
        "not-a-token", headers={"apns-topic": TOPIC, "apns-id": sent_id}
    )

    assert response.status == 400
    assert not response.ended_on_headers
    assert response.headers["apns-id"] == sent_id
    assert response.headers["content-type"] == "application/json"
    assert len(response.data_frames) == 1
    assert response.json == {"reason": "BadDeviceToken"}


async def test_bad_device_token(standin: ApnsStandin, cert_apns: APNs) -> None:
    malformed = await send(cert_apns, token="12" * 20)
    standin.fail(TOKEN, 400)
    programmed = await send(cert_apns)

    assert (malformed.status, malformed.description) == ("400", "BadDeviceToken")
    assert (programmed.status, programmed.description) == ("400", "BadDeviceToken")


async def test_unregistered_carries_a_timestamp(standin: ApnsStandin, cert_apns: APNs) -> None:
    standin.fail(TOKEN, 410)
    before = int(time.time() * 1000)

    result = await send(cert_apns)

    assert (result.status, result.description) == ("410", "Unregistered")
    assert before <= result.timestamp <= int(time.time() * 1000)
    assert standin.received[-1].reason == "Unregistered"
    assert (await send(cert_apns)).status == "410"  # no `times`: for good


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
)
async def test_transient_failure_then_success(
    standin: ApnsStandin, cert_apns: APNs, status: int, reason: str
) -> None:
    standin.fail(TOKEN, status, times=1)

    first = await send(cert_apns)
    second = await send(cert_apns)

    assert (first.status, first.description) == (str(status), reason)
    assert second.is_successful
    assert [push.status for push in standin.received] == [status, 200]


async def test_global_failure_applies_to_every_token(standin: ApnsStandin, cert_apns: APNs) -> None:
    standin.fail(None, 503)

    results = [await send(cert_apns, token) for token in (TOKEN, OTHER_TOKEN)]

    assert [result.status for result in results] == ["503", "503"]


async def test_random_failures_hit_about_their_share_and_stop_at_zero(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    standin.fail_randomly(0.3, 500, seed=7)
    results = [await send(cert_apns) for _ in range(200)]
    failed = sum(result.status == "500" for result in results)
    assert 40 <= failed <= 80  # 30% of 200, give or take the seeded draw
    assert all(r.status in ("200", "500") for r in results)
    standin.fail_randomly(0)
    after = [await send(cert_apns) for _ in range(20)]
    assert all(result.is_successful for result in after)


async def test_expired_provider_tokens_are_refused_and_a_new_one_is_accepted(
    standin: ApnsStandin, pki: Pki
) -> None:
    def client() -> APNs:
        return standin_apns(
            standin.port,
            pki.ca_file,
            key=provider_key_pem(pki.provider_key),
            key_id=KEY_ID,
            team_id=TEAM_ID,
            topic=TOPIC,
        )

    first = client()
    try:
        assert (await send(first)).is_successful
        standin.expire_provider_tokens()
        refused = await send(first)
    finally:
        await close_apns(first)
    renewed = client()  # a new client signs a new token (ECDSA: another signature)
    try:
        accepted = await send(renewed)
    finally:
        await close_apns(renewed)
    assert (refused.status, refused.description) == ("403", "ExpiredProviderToken")
    assert accepted.is_successful


async def test_delayed_answer_does_not_hold_up_other_streams(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    standin.delay(TOKEN, 1.0)
    slow = asyncio.create_task(send(cert_apns, TOKEN))
    await standin.wait_for(1, timeout=TIMEOUT)

    fast = await send(cert_apns, OTHER_TOKEN)

    assert fast.is_successful
    assert not slow.done()
    assert (await slow).is_successful
    assert standin.streams_in_progress == 0


async def test_dropped_connection_makes_aioapns_resend(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    standin.drop_connection(TOKEN)

    result = await send(cert_apns)

    assert result.is_successful
    dropped, resent = standin.received
    assert (dropped.status, dropped.apns_id) == (None, None)
    assert resent.status == 200
    assert resent.connection != dropped.connection


async def test_connection_dropped_every_time_exhausts_aioapns(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    standin.drop_connection(TOKEN, times=None)

    with pytest.raises(MaxAttemptsExceeded):
        await send(cert_apns)

    assert [push.status for push in standin.received] == [None] * 5  # aioapns' attempts


async def test_drop_after_requests(standin: ApnsStandin, raw_client: RawH2Client) -> None:
    standin.drop_connection(after_requests=2)

    answered = [await raw_client.request(token) for token in (TOKEN, OTHER_TOKEN)]
    with pytest.raises(ConnectionError):
        await raw_client.request()

    assert [response.status for response in answered] == [200, 200]
    assert raw_client.terminated is None  # cut, not GOAWAY
    assert [push.status for push in standin.received] == [200, 200, None]


async def test_omitted_apns_id(standin: ApnsStandin, raw_client: RawH2Client) -> None:
    standin.omit_apns_id(TOKEN)

    response = await raw_client.request()

    assert response.status == 200
    assert "apns-id" not in response.headers
    assert response.ended_on_headers
    assert standin.received[-1].apns_id is None


async def test_aioapns_waits_forever_for_a_200_without_apns_id(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    """aioapns keeps the cancelled request too: losing the connection logs InvalidStateError."""
    standin.omit_apns_id(None)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            cert_apns.send_notification(NotificationRequest(TOKEN, {})), timeout=0.5
        )

    assert standin.received[-1].status == 200


@pytest.mark.parametrize(
    ("protocol", "all_answered"),
    [(APNsProductionClientProtocol, False), (AcknowledgingProtocol, True)],
)
async def test_error_reasons_beyond_the_connection_window(
    standin: ApnsStandin,
    pki: Pki,
    protocol: type[APNsProductionClientProtocol],
    all_answered: bool,
) -> None:
    """Documents an aioapns defect: if plain aioapns stops stalling, it has been fixed."""
    standin.fail(None, 410)
    pushes = 1400  # 1,400 reasons of about 50 bytes overflow the 65,535-byte connection window
    apns = standin_apns(
        standin.port,
        pki.ca_file,
        protocol,
        client_cert=str(pki.client_pem),
        topic=TOPIC,
        err_func=ignore_error,
    )
    sends = [
        asyncio.create_task(apns.send_notification(NotificationRequest(TOKEN, {})))
        for _ in range(pushes)
    ]
    try:
        await standin.wait_for(pushes, timeout=SLOW_TIMEOUT)
        # A stalled answer never comes: the mended protocol gets as long as a loaded machine
        # needs, plain aioapns only long enough to show the stall.
        _, waiting = await asyncio.wait(sends, timeout=SLOW_TIMEOUT if all_answered else 0.5)
    finally:
        for send_task in sends:
            send_task.cancel()
        await close_apns(apns)

    assert (not waiting) is all_answered


async def test_provider_token_accepted(standin: ApnsStandin, pki: Pki) -> None:
    apns = standin_apns(
        standin.port,
        pki.ca_file,
        key=provider_key_pem(pki.provider_key),
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=TOPIC,
    )
    try:
        result = await send(apns)
    finally:
        await close_apns(apns)

    assert result.is_successful
    push = standin.received[-1]
    assert push.authenticated_by == "token"
    assert push.headers["authorization"].startswith("bearer ")


async def test_provider_token_signed_by_an_unknown_key_is_rejected(
    standin: ApnsStandin, pki: Pki
) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())
    apns = standin_apns(
        standin.port,
        pki.ca_file,
        key=provider_key_pem(impostor),
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=TOPIC,
    )
    try:
        result = await send(apns)
    finally:
        await close_apns(apns)

    assert (result.status, result.description) == ("403", "InvalidProviderToken")
    assert standin.received[-1].authenticated_by is None


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "MissingProviderToken"),
        ("bearer not-a-jwt", "InvalidProviderToken"),
        ("expired", "ExpiredProviderToken"),
    ],
)
async def test_provider_token_problems(
    standin: ApnsStandin, pki: Pki, authorization: str | None, reason: str
) -> None:
    if authorization == "expired":
        issued_at = int(time.time()) - 2 * 3600
        authorization = f"bearer {provider_token(pki.provider_key, issued_at=issued_at)}"
    headers = {"apns-topic": TOPIC}
    if authorization is not None:
        headers["authorization"] = authorization
    client = await RawH2Client.connect(standin, pki, with_certificate=False)
    try:
        response = await client.request(headers=headers)
    finally:
        await client.close()

    assert (response.status, response.json["reason"]) == (403, reason)


@pytest.mark.parametrize(
    ("options", "status", "reason"),
    [
        ({"headers": {}}, 400, "MissingTopic"),
        ({"method": "GET", "body": b""}, 405, "MethodNotAllowed"),
        ({"path": "/3/elsewhere"}, 404, "BadPath"),
        ({"body": b""}, 400, "PayloadEmpty"),
        ({"body": b"not json"}, 400, "BadPayload"),
        ({"body": b"x" * 4097}, 413, "PayloadTooLarge"),
        ({"headers": {"apns-topic": TOPIC, "apns-id": "nope"}}, 400, "BadMessageId"),
        ({"headers": {"apns-topic": TOPIC, "apns-push-type": "fax"}}, 400, "InvalidPushType"),
    ],
)
async def test_malformed_requests(
    raw_client: RawH2Client, options: dict[str, Any], status: int, reason: str
) -> None:
    response = await raw_client.request(**options)

    assert (response.status, response.json) == (status, {"reason": reason})


async def test_largest_payload_is_accepted(standin: ApnsStandin, cert_apns: APNs) -> None:
    message = {"x": "a" * (4096 - len(json.dumps({"x": ""})))}

    result = await asyncio.wait_for(
        cert_apns.send_notification(NotificationRequest(TOKEN, message)), TIMEOUT
    )

    assert result.is_successful
    assert len(standin.received[-1].payload) == 4096


async def test_many_concurrent_pushes_leave_no_stream_state(
    standin: ApnsStandin, cert_apns: APNs
) -> None:
    tokens = [f"{index:064x}" for index in range(500)]

    results = await asyncio.gather(*(send(cert_apns, token) for token in tokens))

    assert all(result.is_successful for result in results)
    received = await standin.wait_for(500, timeout=SLOW_TIMEOUT)
    assert sorted(push.token for push in received) == tokens
    assert standin.streams_in_progress == 0


async def test_many_streams_in_flight_on_one_raw_connection(
    standin: ApnsStandin, raw_client: RawH2Client
) -> None:
    stream_ids = [raw_client.send(f"{index:064x}") for index in range(300)]

    responses = [await raw_client.response(stream_id) for stream_id in stream_ids]

    assert {response.status for response in responses} == {200}
    assert standin.streams_in_progress == 0


async def test_error_body_respects_the_client_flow_control_window(
    standin: ApnsStandin, pki: Pki
) -> None:
    client = await RawH2Client.connect(standin, pki, initial_window_size=8)
    try:
        response = await client.request("bad")
    finally:
        await client.close()

    assert len(response.data_frames) > 1
    assert all(len(frame) <= 8 for frame in response.data_frames)
    assert response.json == {"reason": "BadDeviceToken"}


async def test_error_body_waits_while_the_window_is_closed(standin: ApnsStandin, pki: Pki) -> None:
    client = await RawH2Client.connect(standin, pki, initial_window_size=8, acknowledge_data=False)
    try:
        stream_id = client.send("bad")
        await client.pump(lambda: stream_id in client.responses)
        await client.pump(lambda: bool(client.responses[stream_id].data_frames))

        assert standin.streams_in_progress == 1  # the rest of the body waits for WINDOW_UPDATE
        assert stream_id not in client.ended
    finally:
        await client.close()


async def test_ping_is_acknowledged(raw_client: RawH2Client) -> None:
    raw_client.h2.ping(b"passpost")
    raw_client.writer.write(raw_client.h2.data_to_send())

    await raw_client.pump(lambda: raw_client.ping_acks == 1)


async def test_stop_sends_goaway(standin: ApnsStandin, raw_client: RawH2Client) -> None:
    await raw_client.request()

    await standin.stop()

    with pytest.raises(ConnectionError):
        await raw_client.pump(lambda: False)
    assert raw_client.terminated is not None
    assert raw_client.terminated.error_code == ErrorCodes.NO_ERROR
    assert raw_client.terminated.last_stream_id == 1


async def test_several_connections(standin: ApnsStandin, pki: Pki) -> None:
    clients = [await RawH2Client.connect(standin, pki) for _ in range(3)]
    try:
        responses = await asyncio.gather(*(client.request() for client in clients))
    finally:
        for client in clients:
            await client.close()

    assert [response.status for response in responses] == [200, 200, 200]
    assert len({push.connection for push in standin.received}) == 3


async def test_reset_forgets_faults_and_pushes(standin: ApnsStandin, cert_apns: APNs) -> None:
    await send(cert_apns)
    standin.fail(None, 500)
    standin.delay(None, 10)
    standin.drop_connection()
    standin.omit_apns_id(None)

    standin.reset()
    result = await send(cert_apns)

    assert result.is_successful
    assert [push.status for push in standin.received] == [200]


@pytest.mark.parametrize(
    "program",
    [
        lambda standin: standin.fail(TOKEN, 200),
        lambda standin: standin.fail(TOKEN, 403),
        lambda standin: standin.fail(TOKEN, 410, times=0),
        lambda standin: standin.drop_connection(TOKEN, times=0),
        lambda standin: standin.fail_randomly(1.5),
        lambda standin: standin.fail_randomly(0.5, 403),
    ],
    ids=[
        "success-status",
        "status-without-default-reason",
        "fail-zero-times",
        "drop-zero-times",
        "fraction-above-one",
        "random-status-without-default-reason",
    ],
)
def test_impossible_faults_are_refused(pki: Pki, program: Callable[[ApnsStandin], None]) -> None:
    standin = ApnsStandin(certfile=pki.server_cert, keyfile=pki.server_key)

    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        program(standin)


async def test_wait_for_is_bounded(standin: ApnsStandin) -> None:
    with pytest.raises(TimeoutError, match="0 of 1 pushes"):
        await standin.wait_for(1, timeout=0.1)


async def test_received_limit_keeps_the_newest_pushes(pki: Pki) -> None:
    tokens = [TOKEN, OTHER_TOKEN, "ef" * 32]
    async with ApnsStandin(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        client_ca_file=pki.ca_file,
        received_limit=2,
    ) as standin:
        client = await RawH2Client.connect(standin, pki)
        try:
            for token in tokens:
                await client.request(token)
        finally:
            await client.close()

    assert [push.token for push in standin.received] == tokens[1:]
    assert standin.push_count == 3


async def test_without_token_keys_provider_tokens_are_only_checked_for_shape(pki: Pki) -> None:
    any_key = ec.generate_private_key(ec.SECP256R1())
    async with ApnsStandin(certfile=pki.server_cert, keyfile=pki.server_key) as standin:
        client = await RawH2Client.connect(standin, pki, with_certificate=False)
        try:
            accepted = await client.request(
                headers={"apns-topic": TOPIC, "authorization": f"bearer {provider_token(any_key)}"}
            )
            rejected = await client.request(
                headers={"apns-topic": TOPIC, "authorization": "bearer nonsense"}
            )
        finally:
            await client.close()

    assert accepted.status == 200
    assert (rejected.status, rejected.json) == (403, {"reason": "InvalidProviderToken"})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_main_logs_each_push_without_the_device_token(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="services.apns_standin")
    server = asyncio.create_task(
        main("127.0.0.1", port, pki.server_cert, pki.server_key, pki.ca_file)
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            while "listening" not in caplog.text:  # noqa: ASYNC110 - main() signals only by log
                await asyncio.sleep(0.01)
        apns = standin_apns(port, pki.ca_file, client_cert=str(pki.client_pem), topic=TOPIC)
        try:
            assert (await send(apns)).is_successful
        finally:
            await close_apns(apns)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server

    [line] = [record.getMessage() for record in caplog.records if "push to" in record.getMessage()]
    assert TOKEN[-8:] in line
    assert TOKEN not in caplog.text
    assert "status=200" in line


async def test_each_push_is_recorded_as_a_json_line_with_only_the_token_suffix(
    pki: Pki,
) -> None:
    record = io.StringIO()
    async with ApnsStandin(
        certfile=pki.server_cert,
        keyfile=pki.server_key,
        client_ca_file=pki.ca_file,
        record=record,
    ) as standin:
        apns = standin_apns(standin.port, pki.ca_file, client_cert=str(pki.client_pem), topic=TOPIC)
        notification_id = str(uuid.uuid4())
        try:
            assert (await send(apns, notification_id=notification_id)).is_successful
        finally:
            await close_apns(apns)
    [line] = record.getvalue().splitlines()
    recorded = json.loads(line)
    assert recorded["token_suffix"] == TOKEN[-8:]
    assert (recorded["status"], recorded["apns_id"], recorded["topic"]) == (
        200,
        notification_id,
        TOPIC,
    )
    assert TOKEN not in line
