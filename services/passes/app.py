"""The passes service: cards, designs, signing, and the customer links."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.contracts.messages import (
    CampaignAudience,
    CardsRefreshed,
    FeedbackRecorded,
    GoogleWalletChanged,
    MarketingConsentSet,
    OfferWithdrawn,
    OrderChanged,
    PushTokenRejected,
    ShopEventReceived,
)
from services.core.db import READ_ONLY_OPTION
from services.core.dbfaults import database_fault
from services.core.errors import NotConfigured
from services.core.queue import Subscription
from services.core.queue.notify import ChannelListener
from services.core.settings import Settings
from services.core.web import Component
from services.passes import admin, links, locations
from services.passes.apple import pass_cache, webservice
from services.passes.apple.pass_cache import PassCache
from services.passes.bundles import PassBuilder
from services.passes.feedback import page as feedback_page
from services.passes.feedback.card import feedback_recorded
from services.passes.handlers import order_changed, push_token_rejected
from services.passes.journeys.catalogue import JOBS as JOURNEY_JOBS
from services.passes.journeys.handlers import shop_event
from services.passes.marketing import handlers as marketing
from services.passes.marketing import page as marketing_page
from services.passes.marketing.jobs import JOBS as MARKETING_JOBS
from services.passes.wallet_orders import webservice as wallet_orders
from services.passes.wallet_orders.package import OrderPackageBuilder

log = logging.getLogger(__name__)


async def _start(app: FastAPI) -> None:
    app.state.pass_builder = PassBuilder(app.state.settings)
    app.state.order_package_builder = OrderPackageBuilder(app.state.settings)
    _start_pass_cache(app)
    app.state.device_log_limit = webservice.device_log_limit()
    app.state.registration_floods = webservice.RegistrationFloods.of(app.state.settings)
    try:
        broken = await _broken_merchants(app)
    except Exception as exc:
        if database_fault(exc) is None:
            raise
        # Serve anyway: requests answer 503 while the database is away, and /readyz says so
        # (and lists broken merchants once it is back).
        log.warning("merchants' signing material not checked: the database is unavailable")
        return
    for problem in broken:
        log.error(
            "merchant's passes answer 503 until its signing material is fixed: %s",
            problem.message,
            extra={"merchant": problem.details.get("merchant")},
        )


def _start_pass_cache(app: FastAPI) -> None:
    """The web service's cache of cards, told of this process's changes (and, on PostgreSQL,
    of the others' by ``_listen_for_card_changes``)."""
    settings: Settings = app.state.settings
    engine: AsyncEngine = app.state.engine
    listener: ChannelListener | None = None
    if engine.dialect.name == "postgresql":
        cache = PassCache(
            settings.pass_cache_seconds, settings.pass_bundle_cache_bytes, lambda: None
        )
        listener = ChannelListener(
            engine,
            [pass_cache.CHANNEL],
            cache.on_notification,
            cache.clear,
            name="pass cache listener",
            meanwhile="pass requests read the database meanwhile",
            application_name="passpost pass cache listener",
        )
        cache.signal = pass_cache.listener_signal(
            listener.listening.is_set, lambda: listener.connections
        )
    else:
        database = engine.url.database
        signal = (
            pass_cache.unchanging
            if database in (None, "", ":memory:")
            else pass_cache.wal_signal(database)
        )
        cache = PassCache(settings.pass_cache_seconds, settings.pass_bundle_cache_bytes, signal)
    app.state.pass_cache = cache
    app.state.pass_cache_listener = listener
    app.state.stop_pass_cache = pass_cache.serve_from(cache)


async def _stop_pass_cache(app: FastAPI) -> None:
    app.state.stop_pass_cache()


async def _listen_for_card_changes(app: FastAPI) -> None:
    listener: ChannelListener | None = app.state.pass_cache_listener
    if listener is not None:
        await listener.run()


async def _broken_merchants(app: FastAPI) -> list[NotConfigured]:
    builder: PassBuilder = app.state.pass_builder
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with sessionmaker() as session:
        # Only reads: on SQLite, a probe every few seconds must not take the writers' lock.
        await session.connection(execution_options={READ_ONLY_OPTION: True})
        broken = await builder.broken_merchants(session)
        await session.rollback()
        return broken


async def signing_readiness(app: FastAPI) -> dict[str, Any]:
    """``/readyz`` details: the merchants whose passes answer 503 (by setting, never a path).

    They do not make the process unready: every other merchant is served.
    """
    broken = [
        {"merchant": p.details.get("merchant"), "setting": p.details.get("setting", "images")}
        for p in await _broken_merchants(app)
    ]
    return {"signing": {"status": "degraded" if broken else "ok", "broken_merchants": broken}}


def component(settings: Settings) -> Component:
    return Component(
        name="passes",
        routers=[
            links.router,
            marketing_page.router,
            feedback_page.router,
            links.assets,
            webservice.router,
            wallet_orders.router,
            wallet_orders.downloads,
            admin.router,
        ],
        subscriptions=[
            Subscription("passes", OrderChanged, order_changed(settings)),
            Subscription("passes", PushTokenRejected, push_token_rejected),
            Subscription("passes", CampaignAudience, marketing.campaign_audience),
            Subscription("passes", OfferWithdrawn, marketing.offer_withdrawn),
            Subscription("passes", MarketingConsentSet, marketing.marketing_consent),
            Subscription("passes", GoogleWalletChanged, marketing.google_wallet_changed),
            Subscription("passes", FeedbackRecorded, feedback_recorded),
            Subscription("passes", CardsRefreshed, locations.cards_refreshed),
            Subscription("passes", ShopEventReceived, shop_event(settings)),
        ],
        on_startup=[_start],
        on_shutdown=[_stop_pass_cache],
        tasks=[_listen_for_card_changes],
        readiness=[signing_readiness],
        jobs=(*MARKETING_JOBS, *JOURNEY_JOBS),
    )
