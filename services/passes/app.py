"""The passes service: cards, designs, signing, and the customer links."""

from __future__ import annotations

from fastapi import FastAPI

from services.contracts.messages import OrderChanged, PushTokenRejected
from services.core.queue import Subscription
from services.core.settings import Settings
from services.core.web import Component
from services.passes import admin, links
from services.passes.apple import webservice
from services.passes.bundles import PassBuilder
from services.passes.handlers import order_changed, push_token_rejected


async def _start(app: FastAPI) -> None:
    app.state.pass_builder = PassBuilder(app.state.settings)
    app.state.device_log_limit = webservice.device_log_limit()
    app.state.registration_floods = webservice.RegistrationFloods.of(app.state.settings)


def component(settings: Settings) -> Component:
    return Component(
        name="passes",
        routers=[links.router, links.assets, webservice.router, admin.router],
        subscriptions=[
            Subscription("passes", OrderChanged, order_changed(settings)),
            Subscription("passes", PushTokenRejected, push_token_rejected),
        ],
        on_startup=[_start],
    )
