"""The orders service: the e-shop facing API."""

from __future__ import annotations

from services.core.settings import Settings
from services.core.web import Component
from services.orders.router import router


def component(settings: Settings) -> Component:
    return Component(name="orders", routers=[router])
