"""The ``nats`` backend as an operator runs it: messages JetStream gives up on, consumers deleted
on the server, the stream's limits, and servers that want credentials and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.queue import Subscription, publish
from services.core.queue.nats import NatsQueue, StreamLimits, durable_name
from services.core.settings import Settings
from tests.conftest import NATS_URL, nats_stream
from tests.core.test_queue import Named, Recorder
from tests.core.test_queue_nats import _outbox_row
from tests.processes import free_port
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(not NATS_URL, reason="PASSPOST_TEST_NATS_URL is not set")


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    async with nats_stream() as name:
        yield name


@contextlib.asynccontextmanager
async def running(
    queue: NatsQueue, subscriptions: list[Subscription[Named]]
) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run(subscriptions))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _publish(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> uuid.UUID:
    async with sessionmaker() as session:
        message_id = publish(session, Named(name=name))
        await session.commit()
    return message_id


async def test_a_message_jetstream_stops_delivering_is_recorded_failed(
    sessionmaker: async_sessionmaker[AsyncSession], stream: str
) -> None:
    queue = NatsQueue(sessionmaker, url=NATS_URL, stream=stream, max_attempts=1, lease_seconds=1.0)
    await queue.connect()
    try:
        await queue.watch_max_deliveries()
        message_id = await _publish(sessionmaker, "lost-in-flight")
        await queue.relay_once()
        subscription = Subscription("tester", Named, Recorder())
        pull = await queue.pull(subscription)
        # A process fetches it and dies before answering: no ack, no failure on the row.
        assert len(await pull.fetch(1, timeout=2)) == 1
        row = await _outbox_row(sessionmaker, message_id)
        assert (row.processed_at, row.failed_at) == (None, None)

        async def recorded() -> bool:
            with contextlib.suppress(TimeoutError):  # a pull makes JetStream look again
                await pull.fetch(1, timeout=0.5)
            return (await _outbox_row(sessionmaker, message_id)).failed_at is not None

        await eventually(recorded, seconds=20)
        row = await _outbox_row(sessionmaker, message_id)
        assert "max_deliver" in (row.last_error or "")
        assert row.processed_at is None
    finally:
        await queue.close()


async def test_an_applied_message_is_never_marked_undelivered(
    sessionmaker: async_sessionmaker[AsyncSession], stream: str
) -> None:
    queue = NatsQueue(sessionmaker, url=NATS_URL, stream=stream)
    await queue.connect()
    try:
        message_id = await _publish(sessionmaker, "applied")
        await queue.relay_once()
        subscription = Subscription("tester", Named, Recorder())
        assert await queue.consume_once(subscription, await queue.pull(subscription)) == 1
        await queue.record_undelivered(message_id)
        row = await _outbox_row(sessionmaker, message_id)
        assert row.processed_at is not None
        assert (row.failed_at, row.last_error) == (None, None)
    finally:
        await queue.close()


async def test_a_consumer_deleted_on_the_server_is_made_again(
    sessionmaker: async_sessionmaker[AsyncSession], stream: str
) -> None:
    queue = NatsQueue(sessionmaker, url=NATS_URL, stream=stream, poll_interval=0.05)
    recorder = Recorder()
    subscription = Subscription("tester", Named, recorder)
    async with running(queue, [subscription]):
        await _publish(sessionmaker, "before")
        await eventually(lambda: _seen(recorder, 1))
        admin = await nats.connect(NATS_URL)
        try:
            await admin.jetstream().delete_consumer(stream, durable_name(subscription))
            await _publish(sessionmaker, "after")
            await eventually(lambda: _seen(recorder, 2))
            info = await admin.jetstream().consumer_info(stream, durable_name(subscription))
            assert info.config.max_deliver == 10
        finally:
            await admin.close()
    assert [m.name for m in recorder.seen] == ["before", "after"]


async def _seen(recorder: Recorder, count: int) -> bool:
    return len(recorder.seen) >= count


async def test_the_stream_keeps_what_the_settings_say(
    sessionmaker: async_sessionmaker[AsyncSession], stream: str
) -> None:
    limits = StreamLimits(
        max_age_seconds=3600, max_bytes=10_000_000, max_msgs=5_000, duplicate_window_seconds=60
    )
    for made in (StreamLimits(), limits):  # made with the defaults, then changed
        queue = NatsQueue(sessionmaker, url=NATS_URL, stream=stream, limits=made)
        await queue.connect()
        await queue.close()
    admin = await nats.connect(NATS_URL)
    try:
        config = (await admin.jetstream().stream_info(stream)).config
    finally:
        await admin.close()
    assert (config.max_age, config.max_bytes, config.max_msgs) == (3600, 10_000_000, 5_000)
    assert config.duplicate_window == 60


def test_the_default_stream_limits_are_bounded_and_cover_the_relay() -> None:
    settings = Settings()
    assert settings.nats_max_age_seconds > 0
    assert settings.nats_max_bytes > 0
    StreamLimits(duplicate_window_seconds=settings.nats_duplicate_window_seconds)
    with pytest.raises(ValueError, match="retry horizon"):
        StreamLimits(duplicate_window_seconds=10)
    with pytest.raises(ValueError, match="MAX_AGE"):
        Settings(nats_max_age_seconds=60, nats_duplicate_window_seconds=120)


# ---------------------------------------------------------------- credentials and TLS


@pytest.fixture(scope="module")
def secured_nats(
    tmp_path_factory: pytest.TempPathFactory, dev_keys: Path
) -> Iterator[dict[str, str]]:
    """A NATS server of the test's own that wants a user and password, over TLS only."""
    server = shutil.which("nats-server")
    if server is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI needs the nats-server binary (for a NATS with TLS and a password)")
        pytest.skip("needs the nats-server binary")
    directory = tmp_path_factory.mktemp("nats")
    port = free_port()
    (directory / "nats.conf").write_text(
        f"""
        listen: 127.0.0.1:{port}
        jetstream {{ store_dir: "{directory / "js"}" }}
        authorization {{ user: passpost, password: "s3cret-pa55" }}
        tls {{
          cert_file: "{dev_keys / "apns-standin.pem"}"
          key_file: "{dev_keys / "apns-standin.key"}"
        }}
        """
    )
    process = subprocess.Popen(
        [server, "-c", str(directory / "nats.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield {"port": str(port), "ca": str(dev_keys / "dev-root.pem")}
    finally:
        process.terminate()
        process.wait(10)


async def test_tls_with_credentials_carries_the_queue(
    sessionmaker: async_sessionmaker[AsyncSession], secured_nats: dict[str, str]
) -> None:
    settings = Settings(nats_ca_file=Path(secured_nats["ca"]))
    url = f"tls://passpost:s3cret-pa55@127.0.0.1:{secured_nats['port']}"
    queue = NatsQueue(
        sessionmaker, url=url, stream="secured", poll_interval=0.05, tls=settings.nats_tls()
    )
    recorder = Recorder()
    async with running(queue, [Subscription("tester", Named, recorder)]):
        await _publish(sessionmaker, "over-tls")
        await eventually(lambda: _seen(recorder, 1), seconds=20)
    assert [m.name for m in recorder.seen] == ["over-tls"]


@pytest.mark.parametrize(
    ("credentials", "trusted"),
    [("passpost:wrong", True), ("", True), ("passpost:s3cret-pa55", False)],
    ids=["wrong password", "no credentials", "unknown CA"],
)
async def test_a_secured_server_refuses_what_it_should(
    sessionmaker: async_sessionmaker[AsyncSession],
    secured_nats: dict[str, str],
    credentials: str,
    trusted: bool,
) -> None:
    settings = Settings(nats_ca_file=Path(secured_nats["ca"]) if trusted else None)
    user = f"{credentials}@" if credentials else ""
    queue = NatsQueue(
        sessionmaker,
        url=f"tls://{user}127.0.0.1:{secured_nats['port']}",
        stream="secured",
        tls=settings.nats_tls(),
    )
    with pytest.raises(Exception):  # noqa: B017, PT011  (nats-py's own error types vary)
        async with asyncio.timeout(10):
            await queue.connect()
    assert not queue.connected
    await queue.close()
