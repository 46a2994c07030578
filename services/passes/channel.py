"""The channel's counts from the passes side: cards issued, Apple registrations, notifications
by kind and marketing suppressed by reason, for the shop's stats (``channel.counted``).

Counting must not slow the paths it watches (an order's change, a device registering): a count
is a dictionary update in the transaction's state, and one ``ChannelCounted`` per merchant and
day is published as the whole transaction commits, never one per card.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date

from sqlalchemy.orm import Session

from services.contracts.messages import ChannelCounted
from services.core.clock import clock
from services.core.queue import publish
from services.core.transaction import AnySession, Slot, before_commit

_COUNTS = Slot[dict[tuple[uuid.UUID, date], Counter[str]]]("the channel's counts", dict)


def count(session: AnySession, merchant_id: uuid.UUID, key: str, n: int = 1) -> None:
    """Add ``n`` to ``key`` (``cards.issued``, ``notifications.marketing``, ...) of the
    merchant's day (UTC), published when the transaction commits."""
    if n <= 0:
        return
    counts = _COUNTS.get(session)
    counts.setdefault((merchant_id, clock.now().date()), Counter())[key] += n
    before_commit(session, _publish_counts)


def _publish_counts(session: Session) -> None:
    for (merchant_id, day), counts in sorted((_COUNTS.peek(session) or {}).items()):
        publish(
            session,
            ChannelCounted(merchant_id=merchant_id, day=day, counts=dict(counts)),
            key=str(merchant_id),
        )
    _COUNTS.set(session, {})
