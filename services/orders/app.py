"""The orders service: the e-shop facing API (its routes arrive with the orders issue)."""

from __future__ import annotations

from services.core.web import Component


def component() -> Component:
    return Component(name="orders")
