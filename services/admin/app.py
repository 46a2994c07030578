"""The admin API as a component: composed by the CLI beside the services it administers."""

from __future__ import annotations

from services.admin import router
from services.core.settings import Settings
from services.core.web import Component


def component(_settings: Settings) -> Component:
    return Component(name="admin", routers=[router.router])
