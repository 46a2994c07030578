"""Fixtures the orders tests share."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.settings import Settings
from services.onboarding import Onboarded
from tests.factories import create_merchant


@pytest.fixture
async def shop(session: AsyncSession, settings: Settings) -> Onboarded:
    return await create_merchant(session, settings)
