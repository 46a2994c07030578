"""The passes service: cards, designs, signing, and the customer links."""

from __future__ import annotations

from fastapi import FastAPI

from services.core.web import Component
from services.passes import links
from services.passes.apple import webservice
from services.passes.cards import PassBuilder


async def _start(app: FastAPI) -> None:
    app.state.pass_builder = PassBuilder(app.state.settings)


def component() -> Component:
    return Component(name="passes", routers=[links.router, webservice.router], on_startup=[_start])
