"""The passes service: cards, designs, signing, and the customer links."""

from __future__ import annotations

from fastapi import FastAPI

from services.contracts.messages import (
    CampaignAudience,
    GoogleWalletChanged,
    MarketingConsentSet,
    OfferWithdrawn,
    OrderChanged,
    PushTokenRejected,
)
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


async def _start(app: FastAPI) -> None:
    app.state.pass_builder = PassBuilder(app.state.settings)
    app.state.device_log_limit = webservice.device_log_limit()


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
        jobs=MARKETING_JOBS,
    )
