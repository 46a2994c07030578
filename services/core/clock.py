"""The clock that time-driven behaviour reads: expiry, quiet hours, caps, deferred sends.

Production reads the system time. Tests set it and move it (``clock.set``, ``clock.advance``)
instead of sleeping, and every move wakes whoever watches the clock (the scheduled jobs of
``services.core.schedule``), so a test that moves past a deadline waits for the resulting
state, never for a job's interval. Pure code takes ``now`` as an argument; only the edges (a
request, a job's run) read ``clock.now()``.

Leases, outbox timestamps and other bookkeeping of the machinery keep the real time
(``services.core.models.utcnow``): moving the clock hours ahead must not expire a lease a
worker still holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Listener = Callable[[], None]


class Clock:
    """The time as the code sees it: the system's, or one a test set and moves."""

    def __init__(self) -> None:
        self._set_to: datetime | None = None
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        return self._set_to if self._set_to is not None else datetime.now(UTC)

    def set(self, when: datetime) -> None:
        """Stop the clock at ``when`` (aware) until it is moved or reset."""
        if when.tzinfo is None:
            raise ValueError("the clock keeps aware times")
        self._set_to = when.astimezone(UTC)
        self._moved()

    def advance(self, by: timedelta) -> None:
        """Move a set clock ahead by ``by`` (the system clock cannot be moved)."""
        if self._set_to is None:
            raise RuntimeError("set the clock before moving it")
        self._set_to += by
        self._moved()

    def reset(self) -> None:
        """Back to the system time."""
        self._set_to = None
        self._moved()

    def watch(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` whenever the clock is set or moved; returns how to stop."""
        with self._lock:
            self._listeners.add(listener)
        return lambda: self._forget(listener)

    def _forget(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def _moved(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()


clock = Clock()
"""The process's clock: every time-driven rule reads it."""
