"""How often a client may do something: a token bucket per key (a client address, say).

Each key may act ``burst`` times at once and regains one action every ``1 / per_second``
seconds. ``take`` answers how long to wait when the bucket is empty, for a ``Retry-After``.
The clock is injected, so tests move time instead of sleeping; at most ``max_keys`` buckets are
kept (the least recently used go first), so a flood of addresses cannot grow memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimit:
    def __init__(
        self,
        *,
        burst: int,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._burst = float(burst)
        self._per_second = per_second
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """Key -> (tokens left, when they were counted)."""

    def take(self, key: str) -> int | None:
        """Use one of ``key``'s actions: None when it may act now, else the whole seconds until
        it may (the bucket is left as it was)."""
        now = self._clock()
        tokens, counted = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - counted) * self._per_second)
        wait = None if tokens >= 1 else max(1, math.ceil((1 - tokens) / self._per_second))
        self._buckets[key] = (tokens - 1 if wait is None else tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
