"""The passes service: cards, designs, signing, and the customer links."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.messages import (
    CampaignAudience,
    GoogleWalletChanged,
    MarketingConsentSet,
    OfferWithdrawn,
    OrderChanged,
    PushTokenRejected,
)
from services.core.db import READ_ONLY_OPTION
from services.core.dbfaults import database_fault
from services.core.errors import NotConfigured
from services.core.queue import Subscription
from services.core.settings import Settings
from services.core.web import Component
from services.passes import admin, links
from services.passes.apple import webservice
from services.passes.bundles import PassBuilder
from services.passes.handlers import order_changed, push_token_rejected
from services.passes.marketing import handlers as marketing
from services.passes.marketing import page as marketing_page
from services.passes.marketing.jobs import JOBS as MARKETING_JOBS

log = logging.getLogger(__name__)


async def _start(app: FastAPI) -> None:
    app.state.pass_builder = PassBuilder(app.state.settings)
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
            links.assets,
            webservice.router,
            admin.router,
        ],
        subscriptions=[
            Subscription("passes", OrderChanged, order_changed(settings)),
            Subscription("passes", PushTokenRejected, push_token_rejected),
            Subscription("passes", CampaignAudience, marketing.campaign_audience),
            Subscription("passes", OfferWithdrawn, marketing.offer_withdrawn),
            Subscription("passes", MarketingConsentSet, marketing.marketing_consent),
            Subscription("passes", GoogleWalletChanged, marketing.google_wallet_changed),
        ],
        on_startup=[_start],
        readiness=[signing_readiness],
        jobs=MARKETING_JOBS,
    )
