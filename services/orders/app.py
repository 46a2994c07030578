"""The orders service: the e-shop facing API."""

from __future__ import annotations

from fastapi import FastAPI

from services.contracts.messages import CampaignStarted
from services.core.queue import Subscription
from services.core.settings import Settings
from services.core.web import Component
from services.orders.intake import EventIntake
from services.orders.retention import orders_retention
from services.orders.router import router
from services.orders.segments import campaign_started


def component(settings: Settings) -> Component:
    async def open_intake(app: FastAPI) -> None:
        app.state.order_intake = EventIntake(app.state.sessionmaker, settings)

    async def close_intake(app: FastAPI) -> None:
        await app.state.order_intake.close()

    return Component(
        name="orders",
        routers=[router],
        subscriptions=[Subscription("orders", CampaignStarted, campaign_started)],
        on_startup=[open_intake],
        on_shutdown=[close_intake],
        jobs=[orders_retention(settings)],
    )
