"""Our aioapns sender against the stand-in, on the event loop production runs (uvloop)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.apns_standin import ApnsStandin
from services.onboarding import DEV_TEAM_IDENTIFIER
from services.passes.apple.devchain import (
    DevChain,
    ensure_dev_chain,
    ensure_pass_type_certificate,
)
from services.push.apns import AioApnsSender, ApnsCredentials, ProviderToken, protocol_for
from tests.waiting import eventually

TOPIC = "pass.dev.passpost.shop"
TOKEN = "ab" * 32


def _certificate_setup(keys: Path) -> tuple[DevChain, ApnsCredentials, ApnsStandin]:
    """The dev chain, a merchant's certificate credentials, and a stand-in that trusts them."""
    chain = ensure_dev_chain(keys)
    files = ensure_pass_type_certificate(keys, TOPIC, DEV_TEAM_IDENTIFIER, "Shop")
    credentials = ApnsCredentials(
        auth="certificate", certificate_path=str(files.certificate), key_path=str(files.key)
    )
    standin = ApnsStandin(
        certfile=chain.apns_standin_certificate,
        keyfile=chain.apns_standin_key,
        client_ca_file=chain.client_ca_bundle,
    )
    return chain, credentials, standin


async def _exchange(keys: Path, recycle_after: int = 50_000) -> list[int]:
    chain, credentials, standin = _certificate_setup(keys)
    async with standin:
        standin.fail("cd" * 32, status=410)
        sender = AioApnsSender(
            standin.url, ca_file=chain.root_certificate, timeout=2, recycle_after=recycle_after
        )
        try:
            results = [
                await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4())) for _ in range(3)
            ]
            results.append(await sender.send(credentials, "cd" * 32, TOPIC, str(uuid.uuid4())))
        finally:
            await sender.close()
        assert {p.connection for p in standin.received} == (
            {1} if recycle_after > 4 else {1, 2, 3, 4}
        )
    assert all(r.apns_id for r in results[:3])
    assert results[3].token_is_dead
    assert results[3].timestamp
    return [r.status for r in results]


@pytest.mark.parametrize("recycle_after", [50_000, 1])
def test_sender_under_uvloop(dev_keys: Path, tmp_path: Path, recycle_after: int) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    for item in dev_keys.iterdir():
        (keys / item.name).write_bytes(item.read_bytes())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_exchange(keys, recycle_after)) == [200, 200, 200, 410]


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "api.push.apple.com", "https://"])
def test_apns_url_must_be_https(url: str) -> None:
    with pytest.raises(ValueError, match="https://"):
        protocol_for(url)


async def test_token_key_authentication(dev_keys: Path, tmp_path: Path) -> None:
    key, key_file = _token_key(tmp_path)
    chain = ensure_dev_chain(dev_keys)
    credentials = ApnsCredentials(
        auth="token", key_path=str(key_file), key_id="ABCDE12345", team_id=DEV_TEAM_IDENTIFIER
    )
    async with ApnsStandin(
        certfile=chain.apns_standin_certificate,
        keyfile=chain.apns_standin_key,
        token_keys={"ABCDE12345": key.public_key()},
    ) as standin:
        sender = AioApnsSender(standin.url, ca_file=chain.root_certificate, timeout=2)
        try:
            result = await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4()))
            forged = ApnsCredentials(
                auth="token", key_path=str(key_file), key_id="ZZZZZ99999", team_id="X"
            )
            refused = await sender.send(forged, TOKEN, TOPIC, str(uuid.uuid4()))
        finally:
            await sender.close()
    assert result.status == 200
    assert standin.received[0].authenticated_by == "token"
    assert (refused.status, refused.reason) == (403, "InvalidProviderToken")


class _CountingTransport:
    """Stands between a connection and its transport, counting the writes."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()


async def test_pushes_sent_together_go_out_in_few_writes(dev_keys: Path) -> None:
    chain, credentials, standin = _certificate_setup(dev_keys)
    async with standin:
        sender = AioApnsSender(
            standin.url, ca_file=chain.root_certificate, timeout=5, max_connections=1
        )
        try:
            assert (await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4()))).status == 200
            (pool,) = sender._pools.values()
            (connection,) = pool.connections
            assert connection.transport is not None
            counting = _CountingTransport(connection.transport)
            connection.transport = counting  # type: ignore[assignment]
            results = await asyncio.gather(
                *(sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4())) for _ in range(50))
            )
        finally:
            await sender.close()
    assert {r.status for r in results} == {200}
    assert counting.writes < 10  # aioapns alone writes once per push


async def test_a_fan_out_spreads_over_the_merchants_connections(dev_keys: Path) -> None:
    """aioapns would put all of these on one connection (it opens another only when one has
    ~1,000 streams in flight); ours are spread, each connection opened once."""
    chain, credentials, standin = _certificate_setup(dev_keys)
    async with standin:
        sender = AioApnsSender(
            standin.url, ca_file=chain.root_certificate, timeout=5, max_connections=3
        )
        try:
            results = await asyncio.gather(
                *(sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4())) for _ in range(300))
            )
        finally:
            await sender.close()
        per_connection = Counter(p.connection for p in standin.received)
    assert {r.status for r in results} == {200}
    assert set(per_connection) == {1, 2, 3}
    assert min(per_connection.values()) >= 32


def _token_key(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "AuthKey_ABCDE12345.p8"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key, key_file


def test_the_provider_token_is_renewed_when_expired_at_most_once_a_minute(
    tmp_path: Path,
) -> None:
    _key, key_file = _token_key(tmp_path)
    now = [1_000_000.0]
    token = ProviderToken(key_file.read_text(), "ABCDE12345", "TEAM", clock=lambda: now[0])
    first = token.get_header()
    now[0] += 10
    assert token.get_header() == first  # kept while it lives
    token.expired()
    renewed = token.get_header()
    assert renewed != first
    now[0] += 10
    token.expired()  # the answers to pushes still in flight with the old one
    assert token.get_header() == renewed
    now[0] += ProviderToken.RENEWAL_PAUSE
    token.expired()
    assert token.get_header() != renewed
    later = token.get_header()
    now[0] += ProviderToken.LIFETIME
    assert token.get_header() != later


async def test_a_push_answered_expired_provider_token_goes_with_a_new_token(
    dev_keys: Path, tmp_path: Path
) -> None:
    key, key_file = _token_key(tmp_path)
    chain = ensure_dev_chain(dev_keys)
    credentials = ApnsCredentials(
        auth="token", key_path=str(key_file), key_id="ABCDE12345", team_id=DEV_TEAM_IDENTIFIER
    )
    async with ApnsStandin(
        certfile=chain.apns_standin_certificate,
        keyfile=chain.apns_standin_key,
        token_keys={"ABCDE12345": key.public_key()},
    ) as standin:
        sender = AioApnsSender(standin.url, ca_file=chain.root_certificate, timeout=2)
        try:
            assert (await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4()))).status == 200
            standin.expire_provider_tokens()
            expired = await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4()))
            again = await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4()))
        finally:
            await sender.close()
    assert (expired.status, expired.reason) == (403, "ExpiredProviderToken")
    assert again.status == 200
    tokens = [push.headers["authorization"] for push in standin.received]
    assert tokens[0] == tokens[1] != tokens[2]


def _answered(standin: ApnsStandin) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return standin.streams_in_progress == 0

    return check


async def test_an_answer_after_the_timeout_keeps_the_connection(tmp_path: Path) -> None:
    """aioapns set a result on the push we stopped waiting for, which raised and dropped the
    connection with every other push on it (seen under load in tests/faults/test_kill.py)."""
    chain, credentials, standin = _certificate_setup(tmp_path)
    slow = "ef" * 32
    async with standin:
        standin.delay(slow, 1.0)
        sender = AioApnsSender(standin.url, ca_file=chain.root_certificate, timeout=0.3)
        try:
            late = await sender.send(credentials, slow, TOPIC, str(uuid.uuid4()))
            await standin.wait_for(1)
            await eventually(_answered(standin))  # the answer came after we stopped waiting
            on_time = await sender.send(credentials, TOKEN, TOPIC, str(uuid.uuid4()))
        finally:
            await sender.close()
        assert (late.status, late.reason) == (0, "Timeout")
        assert on_time.delivered
        assert [p.connection for p in standin.received] == [1, 1]
