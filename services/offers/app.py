"""The offers service: offers, campaigns, redemptions, consent records, channel stats and
the shop events (``offers/events``)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import CampaignProgress, ChannelCounted, FeedbackGiven
from services.core.clock import clock
from services.core.queue import Subscription
from services.core.retention import Prune, retention_job
from services.core.schedule import Job
from services.core.settings import Settings
from services.core.web import BodyLimit, Component
from services.offers import service
from services.offers.events.models import ShopEvent
from services.offers.events.router import router as events_router
from services.offers.feedback import router as feedback
from services.offers.feedback import service as feedback_service
from services.offers.router import router

AUDIENCE_BODY_BYTES = 2_560 * 1024
"""10,000 customer ids of up to 200 characters, and the rest of an offer."""
START_EVERY_SECONDS = 5.0
"""How often the scheduled campaigns are looked at when nothing is due (a clock move wakes
the job at once)."""


async def campaign_progress(session: AsyncSession, progress: CampaignProgress) -> None:
    await service.add_progress(session, progress, clock.now())


async def start_scheduled(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """One batch of the campaigns due to start (their offer's ``valid_from`` came)."""
    async with sessionmaker() as session, session.begin():
        return await service.start_due(session, now)


def _retention(settings: Settings) -> list[Prune]:
    """Shop events by ``received_at``: their ids' answers are kept as long as shops retry."""
    shop_events = cast(Table, ShopEvent.__table__)
    return [Prune(shop_events.c.received_at, settings.retention_shop_events_days)]


def component(settings: Settings) -> Component:
    return Component(
        name="offers",
        routers=[router, feedback.router, events_router],
        subscriptions=[
            Subscription("offers", CampaignProgress, campaign_progress),
            Subscription("offers", ChannelCounted, service.add_counts),
            Subscription("offers", FeedbackGiven, feedback_service.feedback_given),
        ],
        jobs=[
            Job("start-campaigns", START_EVERY_SECONDS, start_scheduled),
            retention_job("shop-events-retention", _retention(settings), settings),
        ],
        body_limits=[
            BodyLimit("POST", r"/v1/offers", AUDIENCE_BODY_BYTES),
            BodyLimit("POST", r"/v1/campaigns/[^/]+/audience", AUDIENCE_BODY_BYTES),
        ],
    )
