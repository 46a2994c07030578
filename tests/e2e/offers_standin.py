"""What the offers service would receive from passes, kept for the tests to read.

The e2e installation has no offers service on this branch (``offers-api`` builds it): this
component consumes its messages from passes (``campaign.progress``, ``channel.counted``) so
that the queue drains, and keeps them for the tests to check. Its consumer name is its own, so
it can stay beside the real offers service's consumers once both are installed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CampaignProgress, ChannelCounted
from services.core.queue import Subscription
from services.core.web import Component

progress: list[CampaignProgress] = []
counted: list[ChannelCounted] = []


async def _progress(session: AsyncSession, message: CampaignProgress) -> None:
    progress.append(message)


async def _counted(session: AsyncSession, message: ChannelCounted) -> None:
    counted.append(message)


def component() -> Component:
    progress.clear()
    counted.clear()
    return Component(
        name="offers-standin",
        subscriptions=[
            Subscription("offers-standin", CampaignProgress, _progress),
            Subscription("offers-standin", ChannelCounted, _counted),
        ],
    )


def campaign_totals() -> dict[str, Any]:
    """The campaign's counters as the offers service would add them up."""
    totals: dict[str, Any] = {
        "targeted": 0,
        "updated": 0,
        "notified": 0,
        "deferred": 0,
        "failed": 0,
        "silent": Counter(),
        "skipped": Counter(),
    }
    for message in progress:
        for key in ("targeted", "updated", "notified", "deferred", "failed"):
            totals[key] += getattr(message, key)
        totals["silent"].update(message.silent)
        totals["skipped"].update(message.skipped)
    return totals


def channel_totals() -> Counter[str]:
    totals: Counter[str] = Counter()
    for message in counted:
        totals.update(message.counts)
    return totals
