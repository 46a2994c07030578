"""What the PassKit web service's hottest call needs of a card, kept in the process.

Devices fetch a pass after every push and on every pull to refresh, and most fetches end in
304. That answer depends on four columns of one card (``registrations.PassState``) which only
``changes.record_change`` moves, and a cached 200 adds the bundle built for the card's version,
which never changes once built. Reading them from the database was most of a 304's cost, so
each process keeps them, and forgets a card as soon as it may have changed:

- In this process: the commit of ``record_change``'s transaction forgets the card (an
  ``after_commit`` callback), before anything of this process hears of the change.
- In another process, PostgreSQL: the same commit NOTIFYs the card on ``CHANNEL``; every
  process serving the web service LISTENs and forgets it. While the listener is not connected
  nothing is answered from the cache, and each (re)connection empties it (what was sent while
  nobody listened is lost).
- In another process, SQLite: every commit writes the WAL file, so an entry is good only while
  the file's size, mtime and inode are those seen just before the entry's row was read. An
  entry is kept only when that mtime is older than ``SETTLED_SECONDS``: a file timestamp moves
  in ticks of a few milliseconds, and a second write in the tick of the first would not show.
- Whatever happens (a clock jump, a listener's connection dead before its ping notices), an
  entry lives at most ``PASSPOST_PASS_CACHE_SECONDS``: the bound on a stale answer.

A read that raced an invalidation is not kept (``Ticket``): every forget moves a generation,
and an entry is stored only if none happened since its read began.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from services.core.queue.notify import notify_at_commit
from services.core.transaction import Slot, after_commit
from services.passes.registrations import PassState

CHANNEL = "passpost.passes.card_changed"
SETTLED_SECONDS = 0.05
"""Longer than any file timestamp tick (Linux: one jiffy, 1-10 ms)."""
MAX_CARDS = 100_000
"""Cards kept per process (a few hundred bytes each); the least recently asked go first."""

Signal = Callable[[], Hashable | None]
"""What must not have moved since an entry was stored; None: keep and trust nothing now."""


def unchanging() -> Hashable:
    """One process alone on its database (SQLite in memory): only its own commits count."""
    return 0


def listener_signal(listening: Callable[[], bool], connections: Callable[[], int]) -> Signal:
    """PostgreSQL: entries stored on the listener's current connection, while it is up."""

    def signal() -> Hashable | None:
        return connections() if listening() else None

    return signal


def wal_signal(database: str) -> Signal:
    """SQLite: the WAL file as it is now, once it has stayed so for ``SETTLED_SECONDS``."""
    wal = f"{database}-wal"

    def signal() -> Hashable | None:
        try:
            found = os.stat(wal)
        except FileNotFoundError:
            return "no wal"
        if time.time_ns() - found.st_mtime_ns < SETTLED_SECONDS * 1e9:
            return None
        return (found.st_ino, found.st_size, found.st_mtime_ns)

    return signal


@dataclass(frozen=True, slots=True)
class CachedPass:
    state: PassState
    last_modified: str
    """The HTTP date of ``state.changed_at``, as a 200 sends it."""
    token: bytes
    """The authentication token, encoded once for the constant-time comparison."""
    signal: Hashable
    stored_at: float


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a card is read from the database; ``store`` keeps the read only if no
    card was forgotten meanwhile."""

    generation: int
    signal: Hashable | None
    taken_at: float
    """An entry's age counts from before its read."""


class PassCache:
    """Per process: the ``PassState`` of cards by (pass type, serial), and their bundles."""

    def __init__(
        self,
        max_age: float,
        max_bundle_bytes: int,
        signal: Signal,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.signal = signal
        self._monotonic = monotonic
        self._cards: OrderedDict[tuple[str, str], CachedPass] = OrderedDict()
        self._generation = 0
        self.bundles = BundleCache(max_bundle_bytes)

    def lookup(self, pass_type: str, serial: str) -> CachedPass | None:
        key = (pass_type, serial)
        entry = self._cards.get(key)
        if entry is None or self.max_age <= 0:
            return None
        if self._monotonic() - entry.stored_at >= self.max_age or self.signal() != entry.signal:
            del self._cards[key]
            return None
        self._cards.move_to_end(key)
        return entry

    def ticket(self) -> Ticket:
        return Ticket(self._generation, self.signal(), self._monotonic())

    def store(self, ticket: Ticket, pass_type: str, serial: str, state: PassState) -> CachedPass:
        entry = CachedPass(
            state,
            format_datetime(state.changed_at, usegmt=True),
            state.authentication_token.encode(),
            ticket.signal,
            ticket.taken_at,
        )
        if ticket.signal is None or ticket.generation != self._generation or self.max_age <= 0:
            return entry
        self._cards[(pass_type, serial)] = entry
        self._cards.move_to_end((pass_type, serial))
        if len(self._cards) > MAX_CARDS:
            self._cards.popitem(last=False)
        return entry

    def forget(self, pass_type: str, serial: str) -> None:
        self._generation += 1
        self._cards.pop((pass_type, serial), None)

    def clear(self) -> None:
        self._generation += 1
        self._cards.clear()

    def on_notification(self, _channel: str, payload: str) -> None:
        """A card another process changed (``CHANNEL``'s payload: ``card_key``)."""
        pass_type, _, serial = payload.partition(" ")
        self.forget(pass_type, serial)


class BundleCache:
    """Signed bundles by (card, version), at most ``max_bytes`` of them, least recent out first.

    A version's bundle is built once and never changes, so nothing here goes stale; a card's
    new version is a new key, and its old ones age out.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bundles: OrderedDict[tuple[uuid.UUID, int], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, card_id: uuid.UUID, version: int) -> bytes | None:
        content = self._bundles.get((card_id, version))
        if content is not None:
            self._bundles.move_to_end((card_id, version))
        return content

    def put(self, card_id: uuid.UUID, version: int, content: bytes) -> None:
        if len(content) > self.max_bytes or (card_id, version) in self._bundles:
            return
        self._bundles[(card_id, version)] = content
        self._bytes += len(content)
        while self._bytes > self.max_bytes:
            _, dropped = self._bundles.popitem(last=False)
            self._bytes -= len(dropped)


_caches: list[PassCache] = []
"""The caches of this process's apps (one in production; tests make many)."""


def serve_from(cache: PassCache) -> Callable[[], None]:
    """Have this process's card changes reach ``cache``; returns the function that stops it."""
    _caches.append(cache)
    return lambda: _caches.remove(cache)


def card_key(pass_type: str, serial: str) -> str:
    return f"{pass_type} {serial}"


_CHANGED = Slot[set[tuple[str, str]]]("cards changed, forgotten by the caches at commit", set)


def forget_at_commit(session: Any, pass_type: str, serial: str) -> None:
    """The card changes in ``session``'s transaction: every process's cache forgets it once
    that commits (``session``: an ``AsyncSession`` or its sync ``Session``)."""
    changed = _CHANGED.get(session)
    if not changed:
        after_commit(session, lambda: _forget(changed))
    changed.add((pass_type, serial))
    notify_at_commit(session, CHANNEL, card_key(pass_type, serial))


def _forget(changed: set[tuple[str, str]]) -> None:
    for cache in _caches:
        for pass_type, serial in changed:
            cache.forget(pass_type, serial)
