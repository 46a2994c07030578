"""The push service: delivery to APNs and Google (its consumers arrive with the push issue)."""

from __future__ import annotations

from services.core.web import Component


def component() -> Component:
    return Component(name="push")
