"""A recorder of what passes tells the offers service, kept for the tests to read.

``recording(offers)`` is the real offers component with each of its consumers' handlers also
noting the message once its transaction commits (``campaign.progress``, ``channel.counted``),
so a test can check each message passes sent as well as the totals the offers API answers.
The queue gives each topic one consumer, so the recorder rides on the real one rather than
beside it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts.messages import CampaignProgress, ChannelCounted
from services.core.queue import Subscription
from services.core.queue.contract import Contract
from services.core.transaction import after_commit
from services.core.web import Component

progress: list[CampaignProgress] = []
counted: list[ChannelCounted] = []


def recording(offers: Component) -> Component:
    progress.clear()
    counted.clear()
    return dataclasses.replace(offers, subscriptions=[_noted(s) for s in offers.subscriptions])


def _noted(subscription: Subscription[Any]) -> Subscription[Any]:
    async def handler(session: AsyncSession, message: Contract) -> None:
        await subscription.handler(session, message)
        if isinstance(message, CampaignProgress):
            after_commit(session, lambda: progress.append(message))
        elif isinstance(message, ChannelCounted):
            after_commit(session, lambda: counted.append(message))

    return Subscription(subscription.consumer, subscription.contract, handler)


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
