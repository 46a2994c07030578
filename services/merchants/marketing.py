"""A merchant's marketing settings: caps, quiet hours and the default time zone.

Minimal stand-in written against the team's design so the passes side runs before the
``offers-push`` branch (which owns this module, its storage and its admin API) is merged.
"""

from __future__ import annotations

import uuid
from datetime import time

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession


class MarketingSettings(BaseModel):
    daily_cap: int = 1
    weekly_cap: int = 3
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    time_zone: str = "UTC"


async def marketing_settings(session: AsyncSession, merchant_id: uuid.UUID) -> MarketingSettings:
    """The merchant's settings (the defaults until the registry stores them)."""
    return MarketingSettings()
