"""A merchant's marketing settings: defaults, validation, and what the registry stores."""

from __future__ import annotations

from datetime import time

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.merchants.marketing import MarketingSettings, marketing_settings, update_marketing
from services.merchants.models import Merchant
from services.merchants.schemas import MerchantCreate
from services.merchants.service import create_merchant


async def test_a_merchant_that_set_nothing_reads_the_defaults(session: AsyncSession) -> None:
    merchant, _ = await create_merchant(session, MerchantCreate(slug="shop", name="Shop"))
    await session.commit()

    settings = await marketing_settings(session, merchant.id)

    assert settings == MarketingSettings(
        daily_cap=1, weekly_cap=3, quiet_start=time(21), quiet_end=time(8), time_zone="UTC"
    )
    assert settings.has_quiet_hours


async def test_only_what_differs_from_the_defaults_is_stored(session: AsyncSession) -> None:
    merchant, _ = await create_merchant(session, MerchantCreate(slug="shop", name="Shop"))
    await update_marketing(session, merchant, {"weekly_cap": 5, "time_zone": "Europe/Prague"})
    await session.commit()

    stored = await session.scalar(select(Merchant.marketing).where(Merchant.id == merchant.id))
    assert stored == {"weekly_cap": 5, "time_zone": "Europe/Prague"}
    settings = await marketing_settings(session, merchant.id)
    assert (settings.daily_cap, settings.weekly_cap, settings.time_zone) == (
        1,
        5,
        "Europe/Prague",
    )

    await update_marketing(session, merchant, {"weekly_cap": 3, "time_zone": "UTC"})
    await session.commit()
    assert await session.scalar(select(Merchant.marketing)) is None


async def test_a_change_is_checked_against_the_settings_it_joins(session: AsyncSession) -> None:
    merchant, _ = await create_merchant(session, MerchantCreate(slug="shop", name="Shop"))
    with pytest.raises(ValidationError) as raised:
        await update_marketing(session, merchant, {"daily_cap": 4})
    assert [e["loc"] for e in raised.value.errors()] == [("weekly_cap",)]
    assert merchant.marketing is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time_zone", "Mars/Olympus"),
        ("time_zone", "../etc/passwd"),
        ("daily_cap", -1),
        ("weekly_cap", 71),
        ("quiet_start", "21:00:30"),
        ("quiet_end", "25:00"),
        ("colour", "red"),
    ],
)
def test_bad_settings_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        MarketingSettings.model_validate({field: value})
    assert raised.value.errors()[0]["loc"] == (field,)


def test_equal_times_mean_no_quiet_hours() -> None:
    assert not MarketingSettings(quiet_start=time(0), quiet_end=time(0)).has_quiet_hours
