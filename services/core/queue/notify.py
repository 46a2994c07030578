"""Waking consumers in other processes on PostgreSQL: NOTIFY at commit, LISTEN where they run.

A transaction that publishes also sends ``pg_notify`` on its topics' channels. PostgreSQL
delivers a notification only once that transaction commits, and never if it rolls back: the
outbox row and the wake-up come and go together. A consumer process listens on a connection of
its own and wakes its queue, so a message crosses processes in a round trip instead of waiting
for the next poll. The poll stays the safety net: a notification missed while the listener is
reconnecting only delays the message until then. SQLite is one process: the in-process wake-up
(``on_commit_of_published``) is all it needs, and nothing here runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session as SyncSession

from services.core import metrics
from services.core.db import driver_connect_args
from services.core.transaction import Slot, before_commit

log = logging.getLogger(__name__)

ORIGIN = uuid.uuid4().hex
"""This process, as the payload of its notifications: its own consumers are woken in-process."""
CHANNEL_PREFIX = "passpost.queue."
PING_SECONDS = 30.0
"""How often an idle listener checks its connection (a silently dropped one never says so)."""
MAX_RECONNECT_SECONDS = 30.0
APPLICATION_NAME = "passpost queue listener"
"""How the listening connection shows in ``pg_stat_activity``."""

_NOTIFICATIONS = Slot[set[tuple[str, str]]]("(channel, payload) to notify at commit", set)
_NOTIFY = text(
    "SELECT pg_notify(n.channel, n.payload) FROM unnest("
    "CAST(:channels AS text[]), CAST(:payloads AS text[])) AS n(channel, payload)"
)


def channel(topic: str) -> str:
    return CHANNEL_PREFIX + topic


def notify_at_commit(session: Any, channel_name: str, payload: str) -> None:
    """Have the session's transaction send ``pg_notify(channel_name, payload)`` when it
    commits; a transaction's notifications (the queue's topics, the pass caches' cards) go in
    one statement, a round trip per commit rather than one per kind.

    ``session`` is an ``AsyncSession`` (or its sync ``Session``): both share ``info``.
    """
    _NOTIFICATIONS.get(session).add((channel_name, payload))
    before_commit(session, _send_notifications)


def _send_notifications(session: SyncSession) -> None:
    # Runs as the outermost transaction commits (never at a SAVEPOINT's release).
    notifications = _NOTIFICATIONS.peek(session)
    if not notifications or session.get_bind().dialect.name != "postgresql":
        return
    channels, payloads = zip(*sorted(notifications), strict=True)
    session.connection().execute(_NOTIFY, {"channels": list(channels), "payloads": list(payloads)})


def reconnect_delay(attempt: int) -> float:
    """0.1 s, 0.2 s, 0.4 s ... capped, with jitter so that restarted processes spread out."""
    base = min(MAX_RECONNECT_SECONDS, 0.1 * 2.0 ** max(0, attempt - 1))
    return random.uniform(0.5, 1.0) * base  # noqa: S311  (jitter, not a secret)


class ChannelListener:
    """Calls ``on_notification(channel, payload)`` for every notification on ``channels``.

    ``on_connect`` runs each time the listener is (re)connected: whatever was sent while
    nobody listened is lost, so the caller looks again then. ``listening`` is set while
    connected; ``gauge`` (if given) says so as a metric. ``name`` and ``meanwhile`` say in
    the log what is listening and what happens while it cannot.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        channels: Iterable[str],
        on_notification: Callable[[str, str], None],
        on_connect: Callable[[], None],
        *,
        name: str,
        meanwhile: str,
        application_name: str = APPLICATION_NAME,
        gauge: Gauge | None = None,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        self._connect_args = driver_connect_args(engine)
        server_settings = self._connect_args.setdefault("server_settings", {})
        server_settings.setdefault("application_name", application_name)
        self._channels = sorted(set(channels))
        self._on_notification = on_notification
        self._on_connect = on_connect
        self._name = name
        self._meanwhile = meanwhile
        self._gauge = gauge
        self._ping_seconds = ping_seconds
        self.listening = asyncio.Event()
        self.connections = 0
        """Connections made so far (a reconnect adds one)."""

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection is lost."""
        failures = 0
        while True:
            try:
                connection: asyncpg.Connection = await asyncpg.connect(**self._connect_args)
            except Exception as exc:  # unreachable, refused, misconfigured: keep trying
                failures += 1
                log.warning(
                    "%s cannot connect; %s",
                    self._name,
                    self._meanwhile,
                    extra={"error": type(exc).__name__, "attempt": failures},
                )
                await asyncio.sleep(reconnect_delay(failures))
                continue
            failures = 0
            try:
                await self._listen(connection)
            finally:
                self.listening.clear()
                if self._gauge is not None:
                    self._gauge.set(0)
                await _close(connection)
            log.warning("%s lost its connection; %s", self._name, self._meanwhile)
            await asyncio.sleep(reconnect_delay(1))

    async def _listen(self, connection: asyncpg.Connection) -> None:
        """Listen on ``connection`` until it is lost (or its ping fails)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            for name in self._channels:
                await connection.add_listener(name, self._received)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return
        self.connections += 1
        self.listening.set()
        if self._gauge is not None:
            self._gauge.set(1)
        self._on_connect()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_seconds):
                    await lost.wait()
                    return
            try:
                await connection.fetchval("SELECT 1", timeout=self._ping_seconds)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return

    def _received(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        self._on_notification(channel, payload)


class CommitListener(ChannelListener):
    """Calls ``wake`` when another process commits a message on one of ``topics``.

    ``ignore_origin``: notifications from this publisher are skipped (by default this process,
    whose commits already wake its consumers in-process). ``listening`` is set while connected;
    on every (re)connection it wakes too: whatever was committed while nobody listened is looked
    at now rather than at the next poll.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        topics: Iterable[str],
        wake: Callable[[], None],
        *,
        ignore_origin: str | None = ORIGIN,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        super().__init__(
            engine,
            (channel(t) for t in topics),
            self._from,
            wake,
            name="queue listener",
            meanwhile="polling meanwhile",
            gauge=metrics.QUEUE_LISTENING,
            ping_seconds=ping_seconds,
        )
        self._wake = wake
        self._ignore_origin = ignore_origin

    def _from(self, _channel: str, origin: str) -> None:
        if origin != self._ignore_origin:
            self._wake()


async def _close(connection: asyncpg.Connection) -> None:
    if connection.is_closed():
        return
    try:
        await connection.close(timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        connection.terminate()
