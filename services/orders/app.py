"""The orders service: the e-shop facing API."""

from __future__ import annotations

from fastapi import FastAPI

from services.contracts.messages import CampaignStarted
from services.core.queue import Subscription
from services.core.settings import Settings
from services.core.web import Component
from services.orders.connectors import admin as connectors_admin
from services.orders.connectors.fetching import shoptet_fetch_job
from services.orders.connectors.router import router as connectors_router
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
        routers=[router, connectors_router],
        subscriptions=[Subscription("orders", CampaignStarted, campaign_started)],
        on_startup=[open_intake],
        on_shutdown=[close_intake],
        jobs=[orders_retention(settings), shoptet_fetch_job(settings)],
    )


def admin_component(_settings: Settings) -> Component:
    """The orders service's admin routes (its connectors), served with the admin API wherever
    that is (``cli.components_of``: ``all``, ``passes``, ``admin``), since a split deployment
    routes ``/admin/`` to the passes processes; they need the database, no orders worker."""
    return Component(name="orders-admin", routers=[connectors_admin.router])
